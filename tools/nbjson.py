"""Read and write a notebook's JSON the way nbdev-clean leaves it (indent 1, UTF-8, a trailing newline), for the tools here."""
import json
from pathlib import Path

def read_nb(path:Path)->dict: return json.loads(Path(path).read_text(encoding='utf-8'))

def write_nb(path:Path, nb:dict):
    "Write `nb` to `path` byte-for-byte as nbdev-clean would."
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
