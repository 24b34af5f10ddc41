"""Train, measure and ship the reference MLP VAE (or IWAE) of dynamically binarized MNIST, the protocol of Burda et al. (2016).

Training: all 60,000 training images, a fresh Bernoulli draw of every image each time it is seen, Adam with a one-cycle
schedule (5% warm-up, then cosine annealing), and no model selection: the model of the last epoch is kept (the test
split is only watched, never used to choose). Measuring: the standard protocol of the papers, the importance-weighted
NLL with K=5,000 samples on all 10,000 test images, binarized by one Bernoulli draw with the evaluation seed 0.

    python tools/train_binarized.py --out runs/bin-vae  --hidden 200 200 --latent 50 --epochs 300 --ship mnist-binarized-mlp-z50
    python tools/train_binarized.py --out runs/bin-iwae --hidden 200 200 --latent 50 --epochs 300 --iw-k 5
    python tools/train_binarized.py --out runs/bin-vae --measure-only --ship mnist-binarized-mlp-z50   # an existing run

It writes RUN/last.pt (+ .json), RUN/metrics.csv, RUN/run.json and RUN/eval.json, and with --ship NAME the model into
the package's pretrained folder (lesson 10). `benchmarks/bench_nll.py` prints the shipped numbers beside the papers'.
"""
import argparse, json, shlex, sys, time
from pathlib import Path
import torch
import fastai.callback.schedule  # noqa: F401  (Learner.fit_one_cycle)
from vae_course.data import binarize_once, get_dls, load_dataset, set_seed, to_float, write_atomic
from vae_course.explorer import export_pretrained
from vae_course.fid import generation_metrics
from vae_course.metrics import evaluate_vae
from vae_course.model import VAE, load_checkpoint, save_checkpoint
from vae_course.training import ELBOCSVLogger, vae_learner

EVAL_SEED, K, KS = 0, 5000, (1, 50, 500)

def train(args):
    set_seed(args.seed)
    dls = get_dls('mnist', bs=args.bs, valid='test', binarize='dynamic', seed=args.seed)
    model = VAE(n_latent=args.latent, n_hidden=tuple(args.hidden))
    learn = vae_learner(dls, model, lr=args.lr, iw_k=args.iw_k)
    args.out.mkdir(parents=True, exist_ok=True)
    learn.add_cb(ELBOCSVLogger(args.out/'metrics.csv'))
    record = dict(command=args.command,
                  args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != 'command'},
                  dataset='mnist', epochs=args.epochs, data_source=dls.source, n_train=dls.train.n,
                  protocol='dynamic binarization', objective=f'IWAE bound, K={args.iw_k}' if args.iw_k > 1 else 'ELBO',
                  schedule='one-cycle (fastai fit_one_cycle, 5% warm-up)',
                  selection='none: the last epoch is kept', torch_threads=args.threads)
    write_atomic(args.out/'run.json', lambda f: f.write_text(json.dumps(record, indent=2)))
    start = time.time()
    with learn.no_bar(): learn.fit_one_cycle(args.epochs, args.lr, pct_start=0.05)
    record['train_seconds'] = round(time.time() - start, 1)
    save_checkpoint(learn.model, args.out/'last.pt')
    write_atomic(args.out/'run.json', lambda f: f.write_text(json.dumps(record, indent=2)))
    print(f"trained {args.out} in {record['train_seconds']:.0f} s")

def measure(run_dir:Path, iw_images:int|None=None)->dict:
    ("The standard protocol on the run's last model (the NLL on `iw_images` random test images, None: all); "
     "writes and returns eval.json.")
    model = load_checkpoint(run_dir/'last.pt', device='cpu').eval()
    test_images = to_float(load_dataset('mnist', 'test').images)  # continuous pixels, for the samples' FID below
    test, train = (binarize_once(test_images, 'dynamic', EVAL_SEED),
                   binarize_once(to_float(load_dataset('mnist', 'train').images), 'dynamic', EVAL_SEED))
    start = time.time()
    run = json.loads((run_dir/'run.json').read_text())
    result = dict(run=run_dir.name, dataset='mnist', protocol='dynamic binarization',
                  checkpoint='last.pt: the last epoch (no selection)',
                  objective=run['objective'], split='test', eval_seed=EVAL_SEED,
                  **evaluate_vae(model, test, k=K, iw_images=iw_images, ks=KS, train_data=train, seed=EVAL_SEED, progress=True))
    result['iw_seconds'] = round(time.time() - start, 1)
    result['generation'] = generation_metrics(model, test_images, n=1000, dataset='mnist', seed=EVAL_SEED)
    write_atomic(run_dir/'eval.json', lambda f: f.write_text(json.dumps(result, indent=2)))
    print(f"{run_dir.name}: IW-NLL {result['iw_nll']:.2f} +- {result['iw_nll_se']:.2f} nats "
          f"(K={K:,}, {result['iw_images']:,} of {result['n_images']:,} test images, "
          f"{result['iw_seconds']:.0f} s); negative ELBO {result['neg_elbo']:.2f}")
    return result

def parse_args(argv=None)->argparse.Namespace:
    "The recipe's settings from the command line (`argv`, default `sys.argv[1:]`), with the command that states them."
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', type=Path, required=True)
    p.add_argument('--hidden', type=int, nargs='+', default=[200, 200])
    p.add_argument('--latent', type=int, default=50)
    p.add_argument('--epochs', type=int, default=300)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--bs', type=int, default=128)
    p.add_argument('--iw-k', type=int, default=1, help='importance samples of the training bound (1: the ELBO, a VAE; >1: IWAE)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--measure-only', action='store_true', help='skip training: measure (and ship) an existing run')
    p.add_argument('--iw-images', type=int, default=None,
                   help='test images for the NLL, chosen at random with the evaluation seed '
                        '(default: all 10,000, the standard protocol)')
    p.add_argument('--ship', metavar='NAME', help='store the measured model in the package as pretrained model NAME')
    args = p.parse_args(argv)
    args.command = shlex.join(['python', 'tools/train_binarized.py', *(sys.argv[1:] if argv is None else argv)])
    return args

def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.measure_only: train(args)
    measure(args.out, args.iw_images)
    if args.ship: print(f"shipped {export_pretrained(args.out, args.ship, checkpoint='last.pt')}")

if __name__ == '__main__': main()
