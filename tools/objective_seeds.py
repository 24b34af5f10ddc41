"""More training seeds of lesson 08's VAE-against-IWAE comparison (issue 26): the shipped models are seed 0.

Each run trains one model with `tools/train_binarized.py`'s recipe (dynamically binarized MNIST, 784-200-200-50, Adam
with a one-cycle schedule, no selection), then measures it as lesson 08 measures the shipped ones: weights rounded to
float16 as shipped, the IW-NLL with K=500 on the same 1,000 test images (`pick_images(test_bin, 1000, seed=0)`, the
test split binarized with the evaluation seed 0), z drawn with seed 0, and the one-draw negative ELBO.

    python tools/objective_seeds.py --run vae-60 --seed 1      # one model; writes runs/seeds/vae-60-seed1/
    python tools/objective_seeds.py --run vae-60 --seed 0      # seed 0 is the shipped model: measured only
    python tools/objective_seeds.py --collect                  # every measured run -> vae_course/pretrained/objective_seeds.json

Configurations: vae-60 (the ELBO, 60 epochs), iwae5-60 (the IWAE bound with k=5, 60 epochs), vae-300 (300 epochs).
"""
import argparse, json, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_binarized  # noqa: E402
from vae_course.data import binarize_once, load_dataset, to_float, write_atomic  # noqa: E402
from vae_course.metrics import elbo_per_image, iw_nll_dataset, pick_images  # noqa: E402
from vae_course.explorer import load_pretrained  # noqa: E402
from vae_course.model import load_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNS, OUT = ROOT/'runs'/'seeds', ROOT/'vae_course'/'pretrained'/'objective_seeds.json'
CONFIGS = {'vae-60': dict(iw_k=1, epochs=60, shipped='mnist-binarized-mlp-z50-e60'),
           'iwae5-60': dict(iw_k=5, epochs=60, shipped='mnist-binarized-iwae5-z50-e60'),
           'vae-300': dict(iw_k=1, epochs=300, shipped='mnist-binarized-mlp-z50')}
N_IMAGES, K = 1000, 500  # lesson 08's paired comparison

def measure(model)->dict:
    "Lesson 08's measurement of a model (float32 weights that hold float16 values, as the shipped ones load)."
    test_bin = binarize_once(to_float(load_dataset('mnist', 'test').images), 'dynamic', 0)
    x = pick_images(test_bin, N_IMAGES, seed=0)
    start = time.time()
    nll = iw_nll_dataset(model, x, K, generator=torch.Generator().manual_seed(0)).double()
    neg_elbo = torch.tensor(elbo_per_image(model, x, generator=torch.Generator().manual_seed(0)).neg_elbo.values)
    return dict(iw_nll=nll.mean().item(), iw_nll_se=(nll.std()/N_IMAGES**0.5).item(), neg_elbo=neg_elbo.mean().item(),
                neg_elbo_se=(neg_elbo.std()/N_IMAGES**0.5).item(), measure_seconds=round(time.time() - start, 1))

def run(config:str, seed:int):
    out, c = RUNS/f'{config}-seed{seed}', CONFIGS[config]
    if seed == 0:  # the shipped model is seed 0: measured, not trained again
        result = dict(config=config, seed=0, epochs=c['epochs'], iw_k=c['iw_k'], command=f"shipped: {c['shipped']}",
                      train_seconds=None, **measure(load_pretrained(c['shipped'], device='cpu').eval()))
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out/'seed.json', lambda f: f.write_text(json.dumps(result, indent=2)))
        return print(json.dumps(result))
    # train_binarized's own parser: its defaults are the recipe the shipped seed-0 models were trained with
    ns = train_binarized.parse_args(['--out', str(out.relative_to(ROOT)), '--epochs', str(c['epochs']),
                                     '--iw-k', str(c['iw_k']), '--seed', str(seed)])
    ns.out = out
    torch.set_num_threads(ns.threads)
    train_binarized.train(ns)
    record = json.loads((out/'run.json').read_text())
    result = dict(config=config, seed=seed, epochs=c['epochs'], iw_k=c['iw_k'], command=ns.command,
                  train_seconds=record['train_seconds'],
                  **measure(load_checkpoint(out/'last.pt', device='cpu').half().float().eval()))
    write_atomic(out/'seed.json', lambda f: f.write_text(json.dumps(result, indent=2)))
    print(json.dumps(result))

def collect():
    rows = [json.loads(p.read_text()) for p in sorted(RUNS.glob('*/seed.json'))]
    if not rows: sys.exit(f"no measured runs in {RUNS}")
    doc = dict(note="More training seeds of lesson 08's comparison; the shipped models are seed 0. Measured as lesson "
                    f"08 measures the shipped ones: float16 weights, IW-NLL K={K} on {N_IMAGES} test images "
                    "(dynamic binarization, evaluation seed 0), nats per image.", runs=rows)
    write_atomic(OUT, lambda f: f.write_text(json.dumps(doc, indent=1) + '\n'))
    print(f"{len(rows)} runs -> {OUT.relative_to(ROOT)}")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run', choices=tuple(CONFIGS))
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--collect', action='store_true')
    a = p.parse_args()
    if a.collect: collect()
    elif a.run: run(a.run, a.seed)
    else: p.error('give --run CONFIG --seed N, or --collect')
