#!/usr/bin/env python3
"""Run lessons top to bottom on the full data, the way their committed outputs are made, and record each run's time.

Usage: VAE_COURSE_DATA=/path/to/data python tools/run_lesson.py nbs/08_evaluation.ipynb [more notebooks]

Each notebook runs in place (`jupyter nbconvert --execute --inplace`, no time limit) at one thread
(OMP_NUM_THREADS=1, the condition of the index's table), is cleaned with `nbdev-clean`, and its minutes go into
benchmarks/lesson_times.json. A lesson that fails keeps its old outputs and its old time. Then re-run the table cell of
nbs/index.ipynb and `python tools/make_readme.py`.
"""
import json, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMES = ROOT/'benchmarks'/'lesson_times.json'

def run_lesson(notebook:Path)->float:
    "Run `notebook` top to bottom in place at one thread and clean it; return the minutes the run took."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    start = time.perf_counter()
    r = subprocess.run(['jupyter', 'nbconvert', '--to', 'notebook', '--execute', '--inplace', notebook.name,
                        '--ExecutePreprocessor.timeout=-1'], cwd=notebook.parent, env=env, capture_output=True, text=True)
    minutes = (time.perf_counter() - start)/60
    if r.returncode: raise RuntimeError(f"{notebook.name} failed after {minutes:.1f} minutes:\n{r.stderr[-3000:]}")
    subprocess.run(['nbdev-clean', '--fname', str(notebook)], cwd=ROOT, check=True)
    return minutes

if __name__ == '__main__':
    notebooks = [Path(a).resolve() for a in sys.argv[1:]]
    if not notebooks: sys.exit(__doc__)
    if not os.environ.get('VAE_COURSE_DATA'):
        sys.exit("set VAE_COURSE_DATA to the folder with the full datasets: the site shows full runs")
    for nb in notebooks:
        minutes = run_lesson(nb)
        print(f"{nb.stem}: {minutes:.1f} minutes")
        if not re.match(r'[0-8]\d_', nb.name): continue  # the index's table lists lessons, not the appendix (90-99)
        times = json.loads(TIMES.read_text())
        times['lessons'][nb.stem] = dict(cpu_minutes=round(minutes, 1), measured=time.strftime('%Y-%m-%d'))
        TIMES.write_text(json.dumps(times, indent=2) + '\n')
