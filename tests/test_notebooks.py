"Every lesson runs through nbdev's test machinery, one test per notebook, so a failure names its lesson."
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook  # renamed: pytest would collect a `test_*` name as a test

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))

@pytest.mark.parametrize('notebook', LESSONS, ids=lambda p: p.stem)
def test_lesson(notebook):
    skip_flags = get_config(ROOT).tst_flags.split()  # "notest slow cuda": full runs and GPU-only cells are skipped
    ok, seconds = run_notebook(notebook, skip_flags=skip_flags, showerr=True)
    assert ok, f"{notebook.name} failed under test (the error is printed above)"
