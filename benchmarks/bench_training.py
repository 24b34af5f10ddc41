"""Training cost of fastai's Learner with vae_course's callbacks against a plain PyTorch loop, side by side.

The same model (the MLP VAE, 784-400-20), data (the same on-device batches), seed, optimizer (Adam, lr 1e-3) and
loss (negative ELBO per image, Bernoulli likelihood, continuous pixels) are trained through three loops:

- `plain`: the loop below, written out in plain PyTorch as in PyTorch's VAE example;
- `bare fastai`: fastai's `Learner` with the same loss function and nothing else (no metrics, no callbacks of ours),
  the cost of fastai's training loop itself;
- `vae_learner`: the course's learner, with the ELBO metrics (train and valid), the NaN guard and the collapse monitor.

Timings on a shared machine are noisy, and the first run in a process pays one-off costs. So each loop trains once to
warm up, then the three take turns, `--repeats` times, and the script prints the median seconds per epoch (training
plus validation) of each, the ratios, and the final validation losses (the three must agree).

Usage: python benchmarks/bench_training.py [--epochs 1] [--repeats 3] [--root DIR] [--subset N] [--model mlp|conv] [--bar]
"""
import argparse, statistics, time
from functools import partial
import torch, torch.nn.functional as F
import vae_course  # first: it silences fastai's import-time torch.jit deprecation warning
from fastai.learner import Learner
from fastai.optimizer import OptimWrapper
from vae_course.data import get_dls, set_seed
from vae_course.model import VAE, ConvVAE
from vae_course.training import vae_learner

def neg_elbo(logits, x, mu, logvar):
    "Negative ELBO per image, averaged over the batch, written out independently of vae_course.losses."
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction='sum')
    kld = -0.5*torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kld)/len(x)

def plain_loop(model, dls, epochs, lr):
    "Train and validate with a hand-written PyTorch loop; return the last epoch's validation loss."
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.to(dls.device)
    for epoch in range(epochs):
        model.train()
        for xb, _ in dls.train:
            out = model(xb)
            loss = neg_elbo(out.logits, xb, out.mu, out.logvar)
            opt.zero_grad(); loss.backward(); opt.step()
        model.eval()
        total, n = torch.zeros((), device=dls.device), 0
        with torch.no_grad():
            for xb, _ in dls.valid:
                out = model(xb)
                total += neg_elbo(out.logits, xb, out.mu, out.logvar)*len(xb); n += len(xb)
    return (total/n).item()

def fit_learner(learn, epochs, bar):
    "Fit a fastai learner; return its last validation loss."
    if bar: learn.fit(epochs)
    else:
        with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn.recorder.values[-1][learn.recorder.metric_names[1:].index('valid_loss')]

def run(loop, a):
    "Train a fresh, identically seeded model with `loop`; return (seconds per epoch, final validation loss)."
    set_seed(0); dls = get_dls('mnist', bs=128, root=a.root, subset=a.subset, seed=0)
    set_seed(0); model = a.Model()
    if loop == 'plain': train = lambda: plain_loop(model, dls, a.epochs, 1e-3)
    elif loop == 'bare fastai':
        learn = Learner(dls, model, loss_func=lambda out, x: neg_elbo(out.logits, x, out.mu, out.logvar),
                        opt_func=partial(OptimWrapper, opt=torch.optim.Adam), lr=1e-3)
        train = lambda: fit_learner(learn, a.epochs, a.bar)
    else: learn = vae_learner(dls, model); train = lambda: fit_learner(learn, a.epochs, a.bar)
    start = time.perf_counter(); loss = train()
    return (time.perf_counter() - start)/a.epochs, loss

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--epochs', type=int, default=1, help='epochs per timed run')
    p.add_argument('--repeats', type=int, default=3, help='timed runs of each loop, taken in turns')
    p.add_argument('--root', default=None, help='data folder (default: the usual search, see load_dataset)')
    p.add_argument('--subset', type=int, default=None, help='number of training images (default: all)')
    p.add_argument('--model', choices=['mlp', 'conv'], default='mlp')
    p.add_argument('--bar', action='store_true', help="show fastai's progress bar (off by default, as in a script)")
    a = p.parse_args()
    a.Model = {'mlp': VAE, 'conv': ConvVAE}[a.model]
    loops = ['plain', 'bare fastai', 'vae_learner']

    dls = get_dls('mnist', bs=128, root=a.root, subset=a.subset)
    print(f"data: {dls.source}; {dls.train.n:,} training / {dls.valid.n:,} validation images; device {dls.device}; "
          f"torch threads {torch.get_num_threads()}; model {a.Model.__name__}; {a.epochs} epoch(s) a run, "
          f"{a.repeats} runs each after a warm-up", flush=True)
    for loop in loops: run(loop, a)  # warm-up
    times, losses = {l: [] for l in loops}, {}
    for r in range(a.repeats):
        for loop in loops:
            t, losses[loop] = run(loop, a); times[loop].append(t)
        print(f"run {r + 1}: " + ', '.join(f"{l} {times[l][-1]:.2f}" for l in loops) + ' s/epoch', flush=True)
    med = {l: statistics.median(ts) for l, ts in times.items()}

    print(f"\n{'training loop':<16}{'median s/epoch':>16}{'vs plain':>10}{'vs bare fastai':>16}{'final valid -ELBO':>20}")
    for l in loops:
        print(f"{l:<16}{med[l]:>16.2f}{med[l]/med['plain']:>10.3f}{med[l]/med['bare fastai']:>16.3f}{losses[l]:>20.2f}")
    print(f"\nratio vae_learner / plain: {med['vae_learner']/med['plain']:.3f} (goal: at most 1.10); of which fastai's own loop "
          f"{med['bare fastai']/med['plain']:.3f} and the course's metrics and callbacks {med['vae_learner']/med['bare fastai']:.3f}")
