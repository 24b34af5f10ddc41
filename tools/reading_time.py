"""The reading time of each lesson, from its word count, and the line at its top that states it.

A reader reads prose at about 150 words a minute and code at about 15 lines a minute (the estimate the course's
reviews use). Counted: the words of every markdown cell, and the non-empty lines of every code cell the site shows
(not `#| hide`, `#| echo: false` or `#| include: false`; nbdev's `#|` directives themselves are not counted).

    python tools/reading_time.py                 # print the table for every lesson
    python tools/reading_time.py --write nbs/07_training.ipynb   # (re)write the stated time in those lessons

The stated line is a markdown cell of its own, right after the Colab badge: `*Reading time: about N minutes.*`
`tests/test_docs.py` checks that every lesson states it and that it is current.
"""
import argparse, json, re, secrets, sys
from pathlib import Path

WORDS_PER_MINUTE, LINES_PER_MINUTE = 150, 15
LINE = re.compile(r'^\*Reading time: about (\d+) minutes?\.\*$')
HIDDEN = re.compile(r'^\s*#\|\s*(hide|echo:\s*false|include:\s*false)\s*$', re.M)
ROOT = Path(__file__).resolve().parent.parent

def _text(cell)->str: return ''.join(cell['source'])

def counts(nb:dict)->tuple: # (words, code lines)
    "The words of the markdown cells and the shown, non-empty, non-directive lines of the code cells."
    words = lines = 0
    for c in nb['cells']:
        src = _text(c)
        if c['cell_type'] == 'markdown':
            if LINE.match(src.strip()): continue  # the stated time itself
            words += len(re.sub(r'<[^>]+>|\]\([^)]*\)', ' ', src).split())  # no HTML tags, no link targets
        elif c['cell_type'] == 'code' and not HIDDEN.search(src):
            lines += sum(1 for l in src.splitlines() if l.strip() and not l.lstrip().startswith('#|'))
    return words, lines

def minutes(nb:dict)->int:
    "Reading time in whole minutes (at least 1)."
    words, lines = counts(nb)
    return max(1, round(words/WORDS_PER_MINUTE + lines/LINES_PER_MINUTE))

def stated(nb:dict)->int|None:
    "The minutes the lesson states at its top, or None."
    for c in nb['cells']:
        if c['cell_type'] == 'markdown' and (m := LINE.match(_text(c).strip())): return int(m.group(1))

def write(path:Path)->int:
    "State the current reading time in the lesson at `path`: replace the line, or add it after the Colab badge."
    nb = json.loads(path.read_text())
    text = f"*Reading time: about {minutes(nb)} minutes.*"
    cell = next((c for c in nb['cells'] if c['cell_type'] == 'markdown' and LINE.match(_text(c).strip())), None)
    if cell is None:
        at = next((i + 1 for i, c in enumerate(nb['cells']) if 'colab-badge.svg' in _text(c)), 1)
        cell = dict(cell_type='markdown', id=secrets.token_hex(4), metadata={}, source=[])
        nb['cells'].insert(at, cell)
    cell['source'] = [text]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return minutes(nb)

def lessons()->list: return sorted(p for p in (ROOT/'nbs').glob('[0-9]*.ipynb'))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--write', nargs='+', type=Path, metavar='NB', help='write the stated time into these lessons')
    args = p.parse_args(argv)
    if args.write:
        for path in args.write: print(f"{path.name}: about {write(path)} minutes")
        return
    print(f"{'lesson':<28}{'words':>7}{'code lines':>12}{'minutes':>9}{'stated':>8}")
    for path in lessons():
        nb = json.loads(path.read_text())
        w, l = counts(nb)
        print(f"{path.stem:<28}{w:>7}{l:>12}{minutes(nb):>9}{str(stated(nb) or '-'):>8}")

if __name__ == '__main__': sys.exit(main())
