"""Write README.md from nbs/index.ipynb (its markdown cells and the Markdown its code cells displayed, in order).

`nbdev-readme` does the same through Quarto, which cannot be installed everywhere; this script needs nothing
but the standard library, and `tests/test_docs.py` checks that README.md is up to date with it.
Usage: python tools/make_readme.py [--check]
"""
import json, re, sys, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def _doc_url(notebook:str)->str:
    "The docs page of a lesson: nbdev names it after the notebook, without its number prefix."
    site = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['urls']['Documentation'].rstrip('/')
    return f"{site}/{re.sub(r'^[0-9]+_', '', notebook[:-len('.ipynb')])}.html"

def _text(cell:dict)->str:
    "A markdown cell's source, or the Markdown that a code cell displayed (its saved output), stripped."
    if cell['cell_type'] == 'markdown': return ''.join(cell['source']).strip()
    return '\n\n'.join(''.join(o['data']['text/markdown']).strip() for o in cell.get('outputs', [])
                       if 'text/markdown' in o.get('data', {}))

def readme_text(index=ROOT/'nbs'/'index.ipynb')->str:
    "The README's text: the markdown cells of `index`, separated by blank lines."
    cells = json.loads(Path(index).read_text())['cells']
    body = '\n\n'.join(t for t in map(_text, cells) if t)
    body = re.sub(r'\]\(([\w-]+\.ipynb)\)', lambda m: f"]({_doc_url(m.group(1))})", body)  # lesson links point to the site
    return f"<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n{body}\n"

if __name__ == '__main__':
    readme, text = ROOT/'README.md', readme_text()
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("README.md is out of date: run python tools/make_readme.py")
    else: readme.write_text(text)
