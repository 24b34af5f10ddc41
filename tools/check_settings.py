"""Defaults of settings written outside `vae_course.config` (issue 19: every setting is stated once).

Lists, in the library's modules:
- function parameters named like a config field that carry a literal default (`bs:int=128`): the library refers to the
  config instead (`bs:int=DataConfig.bs`). Fields whose None means "the model class's default" (`n_hidden`) are left
  out: the model's signature is their one statement;
- except the parameters in `EXEMPT`, each with the reason it is not the config's setting;
- literal `default=` and `choices=` in argparse calls: a parser derived from the config (`config.add_arguments`) writes
  none by hand.

    python tools/check_settings.py [FILE ...]   # default: vae_course/*.py; exit code 1 when anything is listed
"""
import ast, sys
from collections import defaultdict
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXEMPT = {  # (module, function, parameter): why its default is its own, not the setting's
    ('core', 'iter_images', 'bs'): "the size of evaluation batches cut from a tensor, not the training batch size",
}

def setting_names()->dict:
    "Each setting's name -> the config class that states it; settings whose None is the model's own default left out."
    from vae_course.config import EvalConfig, RunConfig
    return {f.name: next(k.__name__ for k in reversed(cls.__mro__) if f.name in vars(k).get('__annotations__', {}))
            for cls in (RunConfig, EvalConfig) for f in fields(cls) if not f.metadata['model_default']}

def is_literal(node)->bool:
    "A default written as a value: a constant (None too), a negated or computed one (`-1`, `1/6`), a tuple of them."
    if isinstance(node, ast.Constant): return True
    if isinstance(node, ast.UnaryOp): return is_literal(node.operand)
    if isinstance(node, ast.BinOp): return is_literal(node.left) and is_literal(node.right)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)): return all(is_literal(e) for e in node.elts)
    return False

def _defaults(fn)->list:
    "(parameter, default) pairs of a function definition, keyword-only ones included."
    args = [*fn.args.posonlyargs, *fn.args.args]
    pairs = list(zip(args[len(args) - len(fn.args.defaults):], fn.args.defaults))
    return pairs + [(a, d) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None]

def _qualname(node, parents:dict)->str:
    "`Class.method` or `function` of the definitions around `node`."
    parts = []
    while node in parents:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): parts.insert(0, node.name)
        node = parents[node]
    return '.'.join(parts)

def _is_add_argument(node)->bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'add_argument'

def module_defaults(path:Path, names:dict)->list:
    "The defaults of settings written in one module (see `restated_defaults`)."
    tree, found = ast.parse(Path(path).read_text(encoding='utf-8')), []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            where = _qualname(node, parents)
            for arg, default in _defaults(node):
                if arg.arg in names and is_literal(default) and (path.stem, where, arg.arg) not in EXEMPT:
                    found.append(dict(module=path.stem, line=default.lineno, where=where,
                                      what=f"{arg.arg}={ast.unparse(default)}", config=names[arg.arg]))
        elif _is_add_argument(node):
            option = next((a.value for a in node.args if isinstance(a, ast.Constant)), '?')
            for kw in node.keywords:
                if kw.arg in ('default', 'choices') and is_literal(kw.value):
                    found.append(dict(module=path.stem, line=kw.value.lineno, where=f"argparse {option}",
                                      what=f"{kw.arg}={ast.unparse(kw.value)}", config=None))
    return found

def restated_defaults(paths=None, names=None)->list:
    "One dict per default written outside the config: module, line, where (function or option), what, its config class."
    paths = sorted((ROOT/'vae_course').glob('*.py')) if paths is None else [Path(p) for p in paths]
    names = setting_names() if names is None else names
    return [r for p in paths if p.name != '_modidx.py' for r in module_defaults(p, names)]

def report(found:list)->str:
    "The list grouped by module, with counts."
    by_module = defaultdict(list)
    for r in found: by_module[r['module']].append(r)
    lines = [f"{len(found)} defaults of settings written outside vae_course.config, in {len(by_module)} modules:"]
    for module, rows in sorted(by_module.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"\n{module}.py: {len(rows)}")
        for r in sorted(rows, key=lambda r: r['line']):
            ref = f"  (use {r['config']}.{r['what'].split('=')[0]})" if r['config'] else ''
            lines.append(f"  {r['line']:4d}  {r['where']}: {r['what']}{ref}")
    return '\n'.join(lines)

if __name__ == '__main__':
    found = restated_defaults(sys.argv[1:] or None)
    print(report(found) if found else "every setting's default is stated once, in vae_course.config")
    sys.exit(1 if found else 0)
