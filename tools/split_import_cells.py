#!/usr/bin/env python3
"""Split the leading imports of a mixed code cell into a cell of their own.

Usage: python tools/split_import_cells.py nbs/07_training.ipynb --cells fb827985 [more ids]
       python tools/split_import_cells.py --check nbs/*.ipynb      (lists every mixed cell; most run fine at docs time)

Why: when nbdev builds the docs, it runs every cell that contains an import (to render `show_doc`), all of it;
a cell such as `from torch.distributions import Normal` followed by code that uses a variable made in an earlier
cell then fails at docs time ("NameError: name 'small' is not defined") and stops `nbdev-docs`. nbdev warns
"Found cells containing imports and other code". Moving the imports to a cell just before keeps the lesson's
reading order and its outputs (they stay with the code that made them); no re-run is needed.
Exported cells and cells with directives other than `#| hide` are left alone.
"""
import ast, sys, uuid
from pathlib import Path
from nbjson import read_nb, write_nb

def _leading_imports(src:str):
    "(import lines, rest) when `src` opens with import statements and has other code after them, else None."
    try: body = ast.parse(src).body
    except SyntaxError: return None  # magics
    n = 0
    while n < len(body) and isinstance(body[n], (ast.Import, ast.ImportFrom)): n += 1
    if n == 0 or n == len(body) or body[n].lineno == body[n-1].end_lineno: return None  # nothing to split, or on one line
    lines = src.splitlines(keepends=True)
    first, cut = body[0].lineno - 1, body[n].lineno - 1
    while cut > first and lines[cut-1].lstrip().startswith('#'): cut -= 1  # comments just above the code go with it
    comments = [l for l in lines[:first] if not l.startswith('#|')]       # so do comments above the imports
    return ''.join(lines[first:cut]).rstrip('\n'), ''.join(comments + lines[cut:])

def _lines(s): return [l for l in s.splitlines(keepends=True)]

def split_cells(path:Path, check:bool=False, ids=None)->list:
    nb = read_nb(path)
    out, found = [], []
    for c in nb['cells']:
        src = ''.join(c['source'])
        directives = [l for l in src.splitlines() if l.startswith('#|')]
        parts = (None if c['cell_type'] != 'code'
                 or any(d.split()[0:2] != ['#|', 'hide'] and d.strip() != '#|hide' for d in directives)
                 else _leading_imports(src))
        if parts and ids is not None and c.get('id') not in ids: parts = None
        if parts:
            found.append(c.get('id'))
            head = '\n'.join(directives) + '\n' if directives else ''
            imports = {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8], "metadata": {}, "outputs": [],
                       "source": _lines(head + '\n'.join(l for l in parts[0].splitlines() if not l.startswith('#|')))}
            out.append(imports)
            c = {**c, 'source': _lines(head + parts[1] if directives else parts[1])}
        out.append(c)
    if found and not check:
        nb['cells'] = out
        write_nb(path, nb)
    return found

if __name__ == '__main__':
    argv = [a for a in sys.argv[1:] if a != '--check']
    check = '--check' in sys.argv
    files, ids = (argv[:argv.index('--cells')], set(argv[argv.index('--cells')+1:])) if '--cells' in argv else (argv, None)
    if not files or (ids is None and not check): sys.exit(__doc__)
    for a in files:
        ids_done = split_cells(Path(a), check=check, ids=ids)
        print(f"{a}: {len(ids_done)} mixed cell{'s' if len(ids_done) != 1 else ''} {'found' if check else 'split'}"
              f"{': ' + ', '.join(map(str, ids_done)) if ids_done else ''}")
