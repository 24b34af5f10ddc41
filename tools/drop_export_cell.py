#!/usr/bin/env python3
"""Remove a lesson's trailing `import nbdev; nbdev.nbdev_export()` cell.

Usage: python tools/drop_export_cell.py nbs/00_data.ipynb [more notebooks]   (--check: only list them)

Why: that cell fails wherever nbdev is not installed or the notebook is not inside the repository, which is
exactly where a Colab learner runs a lesson ("Run all" in Colab stops at it). Maintainers export with
`nbdev-export` (or `nbdev-prepare`), and CI runs `nbdev-export` and fails on any difference, so the cell adds
nothing. The notebook's JSON is otherwise left byte-for-byte as nbdev-clean writes it (indent 1, UTF-8,
trailing newline).
"""
import re, sys
from pathlib import Path
from nbjson import read_nb, write_nb

EXPORT = re.compile(r'^\s*(?:#\|[^\n]*\n\s*)*import nbdev\s*[;\n]\s*nbdev\.nbdev_export\(\)\s*$')

def is_export_cell(cell)->bool:
    "A code cell that only (hides and) runs `nbdev.nbdev_export()`."
    return cell['cell_type'] == 'code' and bool(EXPORT.match(''.join(cell['source'])))

def drop_export_cells(path:Path, check:bool=False)->int:
    "Remove the export cells of the notebook at `path`; return how many there were."
    nb = read_nb(path)
    keep = [c for c in nb['cells'] if not is_export_cell(c)]
    n = len(nb['cells']) - len(keep)
    if n and not check:
        nb['cells'] = keep
        write_nb(path, nb)
    return n

if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if a != '--check']
    if not args: sys.exit(__doc__)
    for a in args:
        n = drop_export_cells(Path(a), check='--check' in sys.argv[1:])
        print(f"{a}: {n} export cell{'s' if n != 1 else ''} {'found' if '--check' in sys.argv else 'removed'}")
