"""Run a notebook top to bottom with execnb (no Jupyter server, kernel or nbconvert needed) and time its cells.

The GPU check uses it on a bare machine, where Jupyter is not installed but nbdev's execnb can be carried as a wheel.
Each code cell runs in order in one IPython shell whose working folder is the notebook's; the run stops at the first
error and prints it. It writes the executed notebook (with its outputs) to `--out`, and prints the total time and the
slowest cells. `--skip-flags slow` leaves out the cells that carry `#| slow` (for a quick dry run).

Usage: python benchmarks/run_notebook.py nbs/07_training.ipynb [--out executed.ipynb] [--skip-flags slow cuda]
"""
import argparse, re, sys, time
from pathlib import Path
from fastcore.nbio import read_nb, write_nb  # execnb 0.3 moved them to fastcore
from execnb.shell import CaptureShell

def flags(cell)->set:
    "The nbdev flags of a cell: the words of its `#| ...` lines that are not `key: value` directives."
    return {w for line in cell.source.splitlines() if (m := re.match(r'\s*#\|\s*(.*)', line))
            for w in m.group(1).split() if ':' not in m.group(1)}

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('notebook', type=Path)
    p.add_argument('--out', type=Path, default=None, help='write the executed notebook here')
    p.add_argument('--skip-flags', nargs='*', default=[], help="leave out cells with these nbdev flags, e.g. slow")
    p.add_argument('--top', type=int, default=8, help='how many of the slowest cells to list')
    a = p.parse_args()
    nb = read_nb(a.notebook)
    shell = CaptureShell(path=a.notebook.parent.resolve())
    times, start = [], time.perf_counter()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code' or flags(cell) & set(a.skip_flags): continue
        t = time.perf_counter()
        shell.cell(cell)
        times.append((time.perf_counter() - t, i, cell.source.strip().splitlines()[0][:70] if cell.source.strip() else ''))
        if shell.exc:
            print(f"cell {i} failed after {time.perf_counter() - start:.0f} s: {cell.source[:300]}\n{shell.exc!r}",
                  file=sys.stderr)
            break
    total = time.perf_counter() - start
    if a.out: write_nb(nb, a.out)
    print(f"{a.notebook.name}: {len(times)} code cells in {total:.0f} s ({total/60:.1f} min)" + (', FAILED' if shell.exc else ''))
    for s, i, first in sorted(times, reverse=True)[:a.top]: print(f"  cell {i:>3}: {s:7.1f} s  {first}")
    sys.exit(1 if shell.exc else 0)
