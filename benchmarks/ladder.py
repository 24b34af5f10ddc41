"""The likelihood ladder: every rung the course trains, its `vae-course train` recipe and budget, its test NLL under the
standard protocol, and the published rows beside them (each with its own protocol).

    python benchmarks/ladder.py recipes                 # the training command of every rung
    python benchmarks/ladder.py measure RUNS/NAME       # the standard protocol on a run's last.pt: RUNS/NAME/nll.json
    python benchmarks/ladder.py table --runs RUNS       # the table: every rung found in RUNS, then the published rows

The standard protocol (Burda et al. 2016): MNIST dynamically binarized for training; all 10,000 test images, binarized
once with evaluation seed 0; K=5,000 importance samples per image; nats per image, mean over images +- standard error
over images. `measure` scores the weights as the package ships them (rounded to float16, as `half_state` stores them)
through the model's own `log_weights`, so that learned priors and two stochastic layers are measured with their own
densities. Budgets: epochs; wall time (the sum of the per-epoch times in RUNS/NAME.log, training and validation); and
gradient evaluations, decoder passes per training image: epochs x K (the IWAE objective decodes K codes per image per
step, the ELBO one).
"""
import argparse, json, math, re, sys, time
from pathlib import Path

# every run: dynamic binarization, all 60,000 training images, the test split watched (never used to choose: last.pt is
# scored), one-cycle schedule (5% warm-up to 1e-3, cosine annealing), batch 128, seed 0, at one thread
COMMON = 'vae-course train --dataset mnist --binarize dynamic --valid test --schedule one-cycle --lr 1e-3 --bs 128'
L1, L2 = '--hidden 200 200 --latent 50', '--stochastic-layers 2 --hidden 100 100 --latent 50'
RUNGS = {  # name: (what it is, its arguments after COMMON, importance samples of its objective)
    'vae-e300':        ('VAE, one stochastic layer (784-200-200-50)', f'{L1} --epochs 300', 1),
    'iwae5-e1000':     ('IWAE k=5, one stochastic layer (784-200-200-50)', f'{L1} --iw-k 5 --epochs 1000', 5),
    'iwae50-e100':     ('IWAE k=50, one stochastic layer (784-200-200-50)', f'{L1} --iw-k 50 --epochs 100', 50),
    'vamp-e300':       ('VAE with a VampPrior of 500 pseudo-inputs (784-200-200-50)',
                        f'{L1} --prior vamp --n-components 500 --epochs 300', 1),
    'two-vae-e1000':   ('VAE, two stochastic layers (784-100-100-(100)-50-50-(50))', f'{L2} --epochs 1000', 1),
    'two-iwae5-e1000': ('IWAE k=5, two stochastic layers (784-100-100-(100)-50-50-(50))',
                        f'{L2} --iw-k 5 --epochs 1000', 5),
}
SHIPPED = {  # rungs the package ships (vae_course/pretrained), trained by tools/train_binarized.py with the same recipe
    'vae-e300-shipped':  ('VAE, one stochastic layer (784-200-200-50)', 'mnist-binarized-mlp-z50', 1),
    'vae-e60-shipped':   ('VAE, one stochastic layer (784-200-200-50)', 'mnist-binarized-mlp-z50-e60', 1),
    'iwae5-e60-shipped': ('IWAE k=5, one stochastic layer (784-200-200-50)', 'mnist-binarized-iwae5-z50-e60', 5),
}
K, EVAL_SEED, N_TRAIN = 5000, 0, 60_000
PROTOCOL = (f"MNIST, dynamic binarization; test NLL in nats per image, mean ± standard error over images; K={K:,}, all "
            f"10,000 test images binarized with evaluation seed {EVAL_SEED}; hours: training and validation at one thread "
            "on a shared 2-core machine; grad_evals: decoder passes, epochs x K x 60,000 training images")

def recipe(name:str)->str: return f"{COMMON} {RUNGS[name][1]} --out {name}"

def recipes():
    """Print every rung's command. Run each at one thread in the background, its log in NAME.log beside its folder:
    OMP_NUM_THREADS=1 nice -n 10 setsid nohup CMD > NAME.log 2>&1 &"""
    for name in RUNGS: print(f"# {RUNGS[name][0]}\n{recipe(name)}\n")

def _half(model):
    "The model with its weights rounded to float16 and back, as the package ships them."
    import torch
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point(): t.copy_(t.half().float())
    return model

def _pretrained(name:str)->Path: # the record (.json) of a shipped model; its weights load with load_pretrained
    import vae_course
    return Path(vae_course.__file__).parent/'pretrained'/f'{name}.json'

def measure(run:Path, k:int=K, n_images:int|None=None, bs:int=50, half:bool=True)->dict:
    "The IW NLL of `run`'s last.pt (a shipped rung: the package's weights) under the standard protocol; writes run/nll.json."
    import torch
    from vae_course.data import binarize_once, load_dataset, to_float
    from vae_course.model import load_checkpoint
    from vae_course.losses import iwae_bound
    import vae_course.priors, vae_course.hierarchical  # noqa: F401  (their models, for load_checkpoint)
    if run.name in SHIPPED:
        from vae_course.explorer import load_pretrained
        model = load_pretrained(SHIPPED[run.name][1], device='cpu')  # the package's safetensors, checked against its index
    else: model = load_checkpoint(run/'last.pt', device='cpu').eval()
    run.mkdir(parents=True, exist_ok=True)
    if half: _half(model)
    x = binarize_once(to_float(load_dataset('mnist', 'test').images), 'dynamic', EVAL_SEED)[:n_images]  # (N,1,28,28)
    g, chunk, nll, start = torch.Generator().manual_seed(EVAL_SEED), max(1, 8192//bs), [], time.perf_counter()
    with torch.no_grad():
        for i, xb in enumerate(x.split(bs)):
            lw = torch.cat([model.log_weights(xb, min(chunk, k - s), g) for s in range(0, k, chunk)])  # (K,B)
            nll.append(-iwae_bound(lw.double()))
            if (i + 1) % max(1, len(x)//bs//20) == 0:
                done = (i + 1)*bs; spent = time.perf_counter() - start
                left = spent*(len(x) - done)/done
                print(f"{run.name}: {done:,} of {len(x):,} images, {spent:.0f} s, about {left:.0f} s left",
                      file=sys.stderr, flush=True)
    nll = torch.cat(nll)
    result = dict(run=run.name, model=type(model).__name__, config=model.config, protocol='dynamic binarization',
                  split='test', images=len(x), K=k, eval_seed=EVAL_SEED,
                  weights='float16, as shipped' if half else 'float32',
                  checkpoint='last.pt: the last epoch (no selection)',
                  nll=float(nll.mean()), nll_se=float(nll.std()/math.sqrt(len(nll))),
                  seconds=round(time.perf_counter() - start, 1), unit='nats per image')
    (run/'nll.json').write_text(json.dumps(result, indent=2))
    print(f"{run.name}: IW NLL {result['nll']:.2f} +- {result['nll_se']:.2f} nats "
          f"(K={k:,}, {len(x):,} test images, {result['weights']} weights)")
    return result

def _train_seconds(log:Path)->tuple: # (seconds, epochs seen)
    "The sum of the per-epoch times ('; MM:SS' or 'H:MM:SS' at the end of each epoch line) of a training log."
    if not log.is_file(): return None, 0
    times = re.findall(r'^epoch \d+/\d+: .*; (\d+(?::\d+){1,2})\s*$', log.read_text(), flags=re.M)
    secs = [sum(int(p)*60**i for i, p in enumerate(reversed(t.split(':')))) for t in times]
    return sum(secs), len(secs)

def _shipped_row(runs:Path, name:str)->dict:
    "A shipped rung: its budget and NLL from the package's JSON (float32 weights), or its re-measure in runs/name/nll.json."
    what, pretrained, iw_k = SHIPPED[name]
    meta = json.loads(_pretrained(pretrained).read_text())
    m, epochs = meta['metrics'], meta['epochs']
    row = dict(rung=name, model=what, objective=f'IWAE bound, K={iw_k}' if iw_k > 1 else 'ELBO', epochs=f"{epochs:,}",
               seeds=1, hours=None, grad_evals=f"{epochs*iw_k*N_TRAIN:.2e}")
    if (runs/name/'nll.json').is_file():
        r = json.loads((runs/name/'nll.json').read_text())
        return dict(row, nll=f"{r['nll']:.2f} ± {r['nll_se']:.2f}", K=r['K'], images=r['images'], weights=r['weights'])
    return dict(row, nll=f"{m['iw_nll']:.2f} ± {m['iw_nll_se']:.2f}", K=m['iw_k'], images=m['iw_images'],
                weights='float32 last.pt (the float16 weights shipped: not measured yet)')

def _row(runs:Path, name:str)->dict:
    "One rung's row: its budget from metrics.csv and the log; its NLL from nll.json (or a standard-protocol eval.json)."
    what, _, iw_k = RUNGS[name]
    folder = runs/name
    row = dict(rung=name, model=what, objective=f'IWAE bound, K={iw_k}' if iw_k > 1 else 'ELBO')
    if not folder.is_dir(): return dict(row, epochs='-', nll='not started')
    target = int(re.search(r'--epochs (\d+)', RUNGS[name][1]).group(1))
    done = sum(1 for _ in open(folder/'metrics.csv')) - 1 if (folder/'metrics.csv').is_file() else 0
    seconds, _ = _train_seconds(runs/f'{name}.log')
    row.update(epochs=f"{done:,} of {target:,}" if done < target else f"{target:,}", seeds=1,
               hours=round(seconds/3600, 1) if seconds else None,
               grad_evals=f"{done*iw_k*N_TRAIN:.2e}" if done else None)
    nll = folder/'nll.json'
    ev = folder/'eval.json'
    if nll.is_file():
        r = json.loads(nll.read_text())
        row.update(nll=f"{r['nll']:.2f} ± {r['nll_se']:.2f}", K=r['K'], images=r['images'], weights=r['weights'])
    elif ev.is_file() and (r := json.loads(ev.read_text())).get('iw_k') == K and r.get('iw_images') == 10_000:
        row.update(nll=f"{r['iw_nll']:.2f} ± {r['iw_nll_se']:.2f}", K=r['iw_k'], images=r['iw_images'],
                   weights='float32 (last.pt)')
    else: row.update(nll='not measured yet' if done >= target else 'training', K=None, images=None, weights=None)
    return row

def table(runs:Path, write:Path|None=None):
    "Print the ladder: our rungs (found in `runs`), then the published rows, dynamic and static apart; `write`: our rows as JSON."
    import pandas as pd
    from vae_course.hierarchical import LADDER_PUBLISHED
    pd.set_option('display.width', 250); pd.set_option('display.max_colwidth', 70)
    rows = [_shipped_row(runs, n) for n in SHIPPED]  # then ours; a recipe whose shipped twin is above, only once it has run
    rows += [_row(runs, n) for n in RUNGS if (runs/n).is_dir() or f'{n}-shipped' not in SHIPPED]
    if write: write.write_text(json.dumps(dict(protocol=PROTOCOL, rows=rows), indent=1, ensure_ascii=False) + '\n')
    ours = pd.DataFrame(rows, dtype=object).fillna('-')
    print(f"Ours: {PROTOCOL}")
    print(ours.to_string(index=False))
    pub = pd.DataFrame(LADDER_PUBLISHED, dtype=object).fillna('not stated')
    for b in ('dynamic', 'static'):
        print(f"\nPublished, {b}ally binarized MNIST (not comparable across the two):")
        print(pub[pub.binarization == b].drop(columns='binarization').to_string(index=False))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    sub.add_parser('recipes', help='print the training command of every rung')
    m = sub.add_parser('measure', help="the standard protocol on a run's last.pt (writes nll.json)")
    m.add_argument('run', type=Path, help=f"a run folder; one named after a shipped rung ({', '.join(SHIPPED)}) scores the "
                   "package's weights and writes its nll.json there")
    m.add_argument('--k', type=int, default=K, help='importance samples per image (default: %(default)s)')
    m.add_argument('--images', type=int, default=None, help='the first N test images only (default: all)')
    m.add_argument('--float32', action='store_true', help='score the float32 weights, not the float16 ones that ship')
    t = sub.add_parser('table', help='the ladder table')
    t.add_argument('--runs', type=Path, default=Path('runs/ladder'), help='the rungs\' folder (default: %(default)s)')
    t.add_argument('--write', type=Path, default=None, help='also write our rows to this JSON file (e.g. benchmarks/ladder.json)')
    a = p.parse_args()
    if a.cmd == 'recipes': recipes()
    elif a.cmd == 'measure': measure(a.run, a.k, a.images, half=not a.float32)
    else: table(a.runs, a.write)
