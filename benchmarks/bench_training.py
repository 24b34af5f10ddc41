"""Training cost of fastai's Learner with vae_course's callbacks against a plain PyTorch loop, side by side.

The same model (the MLP VAE, 784-400-20), data (the same on-device batches), seed, optimizer (Adam, lr 1e-3) and
loss (negative ELBO per image, Bernoulli likelihood, continuous pixels) are trained for a few epochs through
`vae_learner` and through the loop below, which is written out here in plain PyTorch as in PyTorch's VAE example.
Prints seconds per epoch (training + validation) for each, their ratio, and both final validation losses.

Usage: python benchmarks/bench_training.py [--epochs 3] [--root DIR] [--subset N] [--model mlp|conv]
"""
import argparse, contextlib, time
import torch, torch.nn.functional as F
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

def timed(f):
    start = time.perf_counter(); result = f(); return result, time.perf_counter() - start

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--root', default=None, help='data folder (default: the usual search, see load_dataset)')
    p.add_argument('--subset', type=int, default=None, help='number of training images (default: all)')
    p.add_argument('--model', choices=['mlp', 'conv'], default='mlp')
    p.add_argument('--no-bar', action='store_true', help="hide fastai's progress bar (it is on in the default run)")
    a = p.parse_args()
    Model = {'mlp': VAE, 'conv': ConvVAE}[a.model]

    set_seed(0); dls = get_dls('mnist', bs=128, root=a.root, subset=a.subset, seed=0)
    print(f"data: {dls.source}; {dls.train.n:,} training / {dls.valid.n:,} validation images; device {dls.device}; "
          f"torch threads {torch.get_num_threads()}; model {Model.__name__}; {a.epochs} epochs")

    set_seed(0); model = Model()
    learn = vae_learner(dls, model)
    with (learn.no_bar() if a.no_bar else contextlib.nullcontext()):
        _, t_fastai = timed(lambda: learn.fit(a.epochs))
    loss_fastai = learn.recorder.values[-1][learn.recorder.metric_names[1:].index('valid_total')]

    set_seed(0); dls = get_dls('mnist', bs=128, root=a.root, subset=a.subset, seed=0)
    set_seed(0); model = Model()
    loss_plain, t_plain = timed(lambda: plain_loop(model, dls, a.epochs, 1e-3))

    print(f"\n{'training loop':<34}{'s/epoch':>10}{'final valid -ELBO (nats/image)':>34}")
    print(f"{'fastai vae_learner':<34}{t_fastai/a.epochs:>10.2f}{loss_fastai:>34.2f}")
    print(f"{'plain PyTorch loop':<34}{t_plain/a.epochs:>10.2f}{loss_plain:>34.2f}")
    print(f"ratio fastai / plain: {t_fastai/t_plain:.3f} (goal: at most 1.10)")
