"The installed package: its public API, its independence from notebooks, and the wheel."
import ast, subprocess, sys, tomllib, zipfile
from pathlib import Path
import vae_course
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PKG = Path(vae_course.__file__).parent
MODULES = sorted(p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_') and p.stem != 'all')

def test_all_reexports_every_module():
    "`from vae_course.all import *` gives every exported name of every module."
    ns = {}
    exec('from vae_course.all import *', ns)
    for mod in MODULES:
        m = __import__(f'vae_course.{mod}', fromlist=['__all__'])
        missing = set(m.__all__) - set(ns)
        assert not missing, f"vae_course.all lacks {sorted(missing)} from vae_course.{mod}"
    assert {'set_seed', 'default_device'} <= set(ns)

def test_library_does_not_import_notebook_tools():
    "The library runs without nbdev or a notebook: no module imports nbdev, IPython or execnb."
    for f in PKG.glob('*.py'):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split('.')[0] in {'nbdev', 'IPython', 'execnb'} for n in names), f"{f.name} imports {names}"

def test_import_in_a_fresh_interpreter():
    out = subprocess.run([sys.executable, '-c', 'from vae_course.all import *; import vae_course; print(vae_course.__version__)'],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == vae_course.__version__

def test_wheel_contains_the_library(tmp_path):
    "The wheel builds from pyproject.toml and holds every module and the declared dependencies."
    subprocess.run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', '--outdir', str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel, = tmp_path.glob('vae_course-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    for mod in MODULES + ['all', '__init__', '_modidx']: assert f'vae_course/{mod}.py' in names
    shipped = sorted(str(p.relative_to(PKG.parent)) for d in ('pretrained', 'weights') for p in (PKG/d).glob('*')
                     if p.suffix in ('.pt', '.json', '.safetensors', '.md'))
    assert shipped and set(shipped) <= set(names), f"package data missing from the wheel: {set(shipped) - set(names)}"
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith('METADATA'))).decode()
    in_wheel = {str(Requirement(l.split(':', 1)[1])) for l in meta.splitlines()
                if l.startswith('Requires-Dist:') and 'extra ==' not in l}
    declared = {str(Requirement(d)) for d in tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['dependencies']}
    assert in_wheel == declared
