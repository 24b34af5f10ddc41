"The docs site, up to Quarto: sidebar, links, Colab badges, README, and nbdev's notebook processing."
import json, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
LESSONS = sorted(p.name for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
sys.path.insert(0, str(ROOT/'tools'))
from make_readme import readme_text

def _markdown(nb):
    return '\n'.join(''.join(c['source']) for c in json.loads((NBS/nb).read_text())['cells']
                     if c['cell_type'] == 'markdown')

def _sidebar_entries(node):
    if isinstance(node, str): yield node
    elif isinstance(node, list):
        for n in node: yield from _sidebar_entries(n)
    elif isinstance(node, dict):
        if 'href' in node: yield node['href']
        yield from _sidebar_entries(node.get('contents', []))

def test_sidebar_lists_every_lesson_once():
    entries = list(_sidebar_entries(yaml.safe_load((NBS/'sidebar.yml').read_text())['website']['sidebar']['contents']))
    assert sorted(entries) == LESSONS, f"sidebar.yml: {entries}; notebooks: {LESSONS}"

def test_lessons_open_with_title_summary_and_colab_badge():
    for nb in LESSONS:
        md = _markdown(nb)
        assert re.match(r'# \S', md), f"{nb} must open with an H1 title"
        assert '\n> ' in md, f"{nb} needs a one-line '> summary'"
        if nb != 'index.ipynb':
            assert f'colab.research.google.com/github/vae-course/vae_course/blob/main/nbs/{nb}' in md, \
                f"{nb}: Colab badge missing or pointing elsewhere"

def test_links_between_notebooks_resolve():
    for nb in LESSONS:
        for target in re.findall(r'\]\(([^)#\s]+\.ipynb)', _markdown(nb)):
            if not target.startswith('http'): assert (NBS/target).exists(), f"{nb} links to missing {target}"
        for target in re.findall(r'nbs/([\w.-]+\.ipynb)', _markdown(nb)):
            assert (NBS/target).exists(), f"{nb} links to missing nbs/{target}"

def test_export_cells_are_small():
    "Every exported cell of a notebook is at most 40 lines, its directive included (issue 19: a cell the reader can take in)."
    long = [f"{nb} cell {i}: {len(src.splitlines())} lines" for nb in LESSONS
            for i, c in enumerate(json.loads((NBS/nb).read_text())['cells'])
            if c['cell_type'] == 'code' and (src := ''.join(c['source'])).startswith('#| export') and len(src.splitlines()) > 40]
    assert not long, "export cells over 40 lines: " + '; '.join(long)

def test_readme_is_generated_from_index():
    assert (ROOT/'README.md').read_text() == readme_text(), "README.md is out of date: run python tools/make_readme.py"

def test_index_shows_the_measured_lesson_times():
    "The index's table of full-run times is the one benchmarks/lesson_times.json gives, and it lists every lesson."
    cell = next(c for c in json.loads((NBS/'index.ipynb').read_text())['cells'] if 'lesson_times_table' in ''.join(c['source']))
    shown = ''.join(''.join(o['data']['text/markdown']) for o in cell['outputs'] if 'text/markdown' in o.get('data', {}))
    namespace, cwd = {}, os.getcwd()
    try:
        # the cell without its last line, which displays
        os.chdir(NBS); exec(''.join(cell['source']).rsplit('\n', 1)[0], namespace)
        expected = namespace['lesson_times_table']()
    finally: os.chdir(cwd)
    assert shown == expected, "nbs/index.ipynb shows stale lesson times: re-run its table cell"
    times = json.loads((ROOT/'benchmarks'/'lesson_times.json').read_text())['lessons']
    course = [nb[:-len('.ipynb')] for nb in LESSONS if re.match(r'[0-8]\d_', nb)]  # the appendix (90-99) has no full run
    assert sorted(times) == sorted(course)

def test_nbdev_proc_nbs(tmp_path):
    "nbdev-proc-nbs processes every notebook for Quarto, in a copy of the repository, Quarto replaced by a stub."
    if shutil.which('quarto'): pytest.skip("quarto is installed: tests/test_site.py builds the whole site instead")
    stub = tmp_path/'bin'/'quarto'; stub.parent.mkdir(); stub.write_text('#!/bin/sh\nexit 0\n'); stub.chmod(0o755)
    env = {**os.environ, 'PATH': f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}
    work = tmp_path/'repo'  # never _proc in the checkout
    shutil.copytree(ROOT, work, symlinks=True, ignore=shutil.ignore_patterns(
        '.git', '_docs', '_proc', '*.egg-info', '__pycache__', 'build', 'dist'))
    r = subprocess.run(['nbdev-proc-nbs'], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"nbdev-proc-nbs failed:\n{r.stderr[-3000:]}"
    processed = sorted(p.name for p in (work/'_proc').rglob('*.ipynb'))
    assert processed == LESSONS
    assert (work/'_proc'/'sidebar.yml').exists() and (work/'_proc'/'site_fixes.lua').exists()
