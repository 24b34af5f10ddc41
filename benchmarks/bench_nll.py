"""Likelihoods under the standard protocol of binarized MNIST, next to the published figures.

The protocol: dynamically binarized MNIST (training images re-drawn from Bernoulli(pixel) every time they are seen),
the importance-weighted NLL with K=5,000 samples on all 10,000 test images, binarized once with evaluation seed 0;
in nats per image. The shipped models were trained and measured by `tools/train_binarized.py`, which records the
command, the epochs and the run time.

Usage:
    python benchmarks/bench_nll.py                       # the stored measurements of the shipped binarized models
    python benchmarks/bench_nll.py --measure             # measure them again now (about 10 minutes a model on 2 CPU cores)
    python benchmarks/bench_nll.py --measure --k 500 --images 1000   # a quicker, noisier check of the same numbers
    python benchmarks/bench_nll.py --run runs/bin-iwae   # also a run folder of tools/train_binarized.py (its eval.json)
"""
import argparse, json, time
from pathlib import Path
import pandas as pd, torch
from vae_course.data import binarize_once, load_dataset, to_float
from vae_course.explorer import _meta, list_pretrained, load_pretrained
from vae_course.metrics import PUBLISHED_NLL, evaluate_vae


def row(name, m:dict, run:dict)->dict:
    "One table row from a measurement `m` (an eval.json) and the run's record."
    hidden = m.get('hidden') or run.get('config', {}).get('n_hidden')
    return dict(model=name, architecture=f"784-{'-'.join(map(str, hidden if isinstance(hidden, list) else [hidden]))}-{m['n_latent']} MLP (ReLU)",
                training=f"{run.get('epochs')} epochs, {m.get('objective', 'ELBO')}", nll=round(m['iw_nll'], 2),
                se=round(m['iw_nll_se'], 2), K=m['iw_k'], images=m['iw_images'], source='this course')

def measure(model, k:int, images:int|None)->dict:
    test = binarize_once(to_float(load_dataset('mnist', 'test').images), 'dynamic', 0)
    start = time.time()
    m = evaluate_vae(model, test, k=k, iw_images=images, ks=(), seed=0, progress=True)
    print(f"  measured in {time.time() - start:.0f} s")
    return m

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--measure', action='store_true', help='measure the shipped models now instead of reading their stored numbers')
    p.add_argument('--k', type=int, default=5000)
    p.add_argument('--images', default='all', help="test images for the NLL: a number or 'all' (default: all)")
    p.add_argument('--run', type=Path, action='append', default=[], help='a run folder of tools/train_binarized.py, with eval.json')
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    shipped = [n for n in list_pretrained().index if _meta(n)['protocol'] == 'dynamic binarization']
    rows = []
    for name in shipped:
        meta = _meta(name)
        m = meta['metrics']
        if a.measure:
            print(f"{name}: K={a.k}, {a.images} test images")
            m = {**m, **measure(load_pretrained(name, device='cpu'), a.k, None if a.images == 'all' else int(a.images))}
        rows.append(row(name, {**m, 'hidden': meta['config']['n_hidden']}, meta))
    for run_dir in a.run:
        run, m = (json.loads((run_dir/f).read_text()) for f in ('run.json', 'eval.json'))
        rows.append(row(run_dir.name, {**m, 'hidden': run['args']['hidden']}, run))
    rows += [dict(**p, se=None, images=10000) for p in PUBLISHED_NLL]
    print(pd.DataFrame(rows).set_index('model').to_string())
    print("\nnats per image; dynamically binarized MNIST; importance-weighted NLL (lower is better); se: standard error over test images")
