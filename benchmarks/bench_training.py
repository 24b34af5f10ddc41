"""Training cost of fastai's Learner with vae_course's callbacks against a plain PyTorch loop, side by side.

The same model (the MLP VAE, 784-400-20), data (the same on-device batches), seed, optimizer (Adam, lr 1e-3) and
loss (negative ELBO per image, Bernoulli likelihood, continuous pixels) are trained through three loops:

- `plain`: the loop below, written out in plain PyTorch as in PyTorch's VAE example;
- `bare fastai`: fastai's `Learner` with the same loss function and nothing else (no metrics, no callbacks of ours),
  the cost of fastai's training loop itself;
- `vae_learner`: the course's learner, with the ELBO metrics (train and valid), the NaN guard and the collapse monitor.

With `--guard-variants`, vae_learner also runs with its NaN guard reading the device after every batch
(`nan_check_every=1`), only at the end of each epoch (`None`), and without the guard, to measure what the guard costs.

Timings on a shared machine are noisy, and the first run in a process pays one-off costs. So each loop trains once to
warm up, then the loops take turns, `--repeats` times, and the script prints the median seconds per epoch (training
plus validation) of each, wall-clock and CPU time of this process, the ratios, and the final validation losses (which
must agree). Run it with OMP_NUM_THREADS=1 on a shared machine: the CPU time of a one-thread process counts the work it
did, and is far less disturbed by other jobs than the wall-clock time.

Usage: python benchmarks/bench_training.py [--epochs 1] [--repeats 3] [--root DIR] [--subset N] [--model mlp|conv]
       [--bs 128] [--guard-variants] [--bar]
"""
import argparse, inspect, statistics, time
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
    "Train a fresh, identically seeded model with `loop`; return (wall-clock and CPU seconds per epoch, final validation loss)."
    set_seed(0); dls = get_dls('mnist', bs=a.bs, root=a.root, subset=a.subset, seed=0)
    set_seed(0); model = a.Model()
    if loop == 'plain': train = lambda: plain_loop(model, dls, a.epochs, 1e-3)
    elif loop == 'bare fastai':
        learn = Learner(dls, model, loss_func=lambda out, x: neg_elbo(out.logits, x, out.mu, out.logvar),
                        opt_func=partial(OptimWrapper, opt=torch.optim.Adam), lr=1e-3)
        train = lambda: fit_learner(learn, a.epochs, a.bar)
    else:
        learn = vae_learner(dls, model, **GUARD[loop])
        if loop == 'vae_learner, no guard': learn.remove_cb(learn.nan_guard)
        train = lambda: fit_learner(learn, a.epochs, a.bar)
    start, cpu = time.perf_counter(), time.process_time(); loss = train()
    return (time.perf_counter() - start)/a.epochs, (time.process_time() - cpu)/a.epochs, loss

GUARD = {'vae_learner': {}, 'vae_learner, guard every batch': dict(nan_check_every=1),
         'vae_learner, guard each epoch': dict(nan_check_every=None), 'vae_learner, no guard': {}}

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--epochs', type=int, default=1, help='epochs per timed run')
    p.add_argument('--repeats', type=int, default=3, help='timed runs of each loop, taken in turns')
    p.add_argument('--root', default=None, help='data folder (default: the usual search, see load_dataset)')
    p.add_argument('--subset', type=int, default=None, help='number of training images (default: all)')
    p.add_argument('--model', choices=['mlp', 'conv'], default='mlp')
    p.add_argument('--bs', type=int, default=128, help='training batch size')
    p.add_argument('--guard-variants', action='store_true', help="also time vae_learner's NaN guard read every batch, once an epoch, and removed")
    p.add_argument('--bar', action='store_true', help="show fastai's progress bar (off by default, as in a script)")
    a = p.parse_args()
    a.Model = {'mlp': VAE, 'conv': ConvVAE}[a.model]
    loops = ['plain', 'bare fastai', 'vae_learner']
    if a.guard_variants:
        if 'nan_check_every' not in inspect.signature(vae_learner).parameters: p.error("this vae_learner has no nan_check_every")
        loops += list(GUARD)[1:]

    dls = get_dls('mnist', bs=a.bs, root=a.root, subset=a.subset)
    print(f"data: {dls.source}; {dls.train.n:,} training / {dls.valid.n:,} validation images; device {dls.device}; "
          f"torch threads {torch.get_num_threads()}; model {a.Model.__name__}; batch size {a.bs}; {a.epochs} epoch(s) a run, "
          f"{a.repeats} runs each after a warm-up", flush=True)
    for loop in loops: run(loop, a)  # warm-up
    times, cpus, losses = {l: [] for l in loops}, {l: [] for l in loops}, {}
    for r in range(a.repeats):
        for loop in loops:
            t, c, losses[loop] = run(loop, a); times[loop].append(t); cpus[loop].append(c)
        print(f"run {r + 1}: " + ', '.join(f"{l} {times[l][-1]:.2f} ({cpus[l][-1]:.2f} CPU)" for l in loops) + ' s/epoch', flush=True)
    med = {l: statistics.median(ts) for l, ts in times.items()}
    cpu = {l: statistics.median(cs) for l, cs in cpus.items()}

    w = max(map(len, loops)) + 2
    print(f"\n{'training loop':<{w}}{'wall s/epoch':>13}{'vs plain':>10}{'vs bare':>9}{'CPU s/epoch':>13}{'vs plain':>10}{'vs bare':>9}"
          f"{'final valid -ELBO':>19}   (medians of {a.repeats} runs)")
    for l in loops:
        print(f"{l:<{w}}{med[l]:>13.2f}{med[l]/med['plain']:>10.3f}{med[l]/med['bare fastai']:>9.3f}"
              f"{cpu[l]:>13.2f}{cpu[l]/cpu['plain']:>10.3f}{cpu[l]/cpu['bare fastai']:>9.3f}{losses[l]:>19.2f}")
    for what, m in (('wall-clock', med), ('CPU', cpu)):
        print(f"\n{what}: vae_learner / plain {m['vae_learner']/m['plain']:.3f} (goal: at most 1.10); of which fastai's own loop "
              f"{m['bare fastai']/m['plain']:.3f} and the course's metrics and callbacks {m['vae_learner']/m['bare fastai']:.3f}")
