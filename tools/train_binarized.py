"""Train the reference MLP VAE (or IWAE) on dynamically binarized MNIST, the protocol of Burda et al. (2016).

All 60,000 training images, a fresh Bernoulli draw of every image each time it is seen, Adam with a one-cycle
schedule, and no model selection: the model of the last epoch is kept (the test split is only watched).
It writes RUN/last.pt (+ .json), RUN/metrics.csv and RUN/run.json; `tools/export_pretrained.py`-style
export happens in lesson 08 / benchmarks/bench_nll.py, which measure the NLL under the standard protocol.

    python tools/train_binarized.py --out runs/bin-vae  --hidden 200 200 --latent 50 --epochs 300
    python tools/train_binarized.py --out runs/bin-iwae --hidden 200 200 --latent 50 --epochs 300 --iw-k 5
"""
import argparse, json, shlex, sys, time
from pathlib import Path
import torch
import fastai.callback.schedule  # fit_one_cycle
from vae_course.data import get_dls, set_seed, write_atomic
from vae_course.model import VAE, save_checkpoint
from vae_course.training import ELBOCSVLogger, vae_learner

def main(argv=None):
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
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    dls = get_dls('mnist', bs=args.bs, valid='test', binarize='dynamic', seed=args.seed)
    model = VAE(n_latent=args.latent, n_hidden=tuple(args.hidden))
    extra = dict(iw_k=args.iw_k) if args.iw_k > 1 else {}
    learn = vae_learner(dls, model, lr=args.lr, **extra)
    args.out.mkdir(parents=True, exist_ok=True)
    learn.add_cb(ELBOCSVLogger(args.out/'metrics.csv'))
    record = dict(command=shlex.join(['python', 'tools/train_binarized.py', *(sys.argv[1:] if argv is None else argv)]),
                  args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  data_source=dls.source, n_train=dls.train.n, protocol='dynamic binarization',
                  objective=f'IWAE bound, k={args.iw_k}' if args.iw_k > 1 else 'ELBO', schedule='one-cycle (fastai fit_one_cycle, 5% warm-up)',
                  selection='none: the last epoch is kept', torch_threads=args.threads)
    write_atomic(args.out/'run.json', lambda f: f.write_text(json.dumps(record, indent=2)))
    start = time.time()
    with learn.no_bar(): learn.fit_one_cycle(args.epochs, args.lr, pct_start=0.05)  # 5% warm-up, then cosine annealing to 0
    record['train_seconds'] = round(time.time() - start, 1)
    save_checkpoint(learn.model, args.out/'last.pt')
    write_atomic(args.out/'run.json', lambda f: f.write_text(json.dumps(record, indent=2)))
    print(f"wrote {args.out} in {record['train_seconds']:.0f} s")

if __name__ == '__main__': main()
