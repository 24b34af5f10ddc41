"""Training cost of fastai's Learner with vae_course's callbacks against a plain PyTorch loop and Pythae, side by side.

The same model (the MLP VAE, 784-400-20, or the conv VAE), data (the same on-device batches: full MNIST, statically
binarized once by default), seed, optimizer (Adam, lr 1e-3) and loss (negative ELBO per image, Bernoulli likelihood)
are trained through these loops, taking turns:

- `plain`: the loop below, written out in plain PyTorch as in PyTorch's VAE example;
- `bare fastai`: fastai's `Learner` with the same loss function and nothing else: the cost of fastai's loop itself;
- `vae_learner`: the course's learner, with the ELBO metrics (train and valid), the NaN guard and the collapse monitor;
- `pythae`: Pythae's `TrainingPipeline` on the same tensors (`bench_pythae.py`, run in its own environment as a
  subprocess when `--pythae PYTHON` exists; default `~/venvs/pythae/bin/python`, see that script's docstring).

`--variants` adds prototypes of changes to the course's learner, made here from outside (subclass or configure; the
library is not edited): fastai's progress bar on; fastai's own `Recorder` losses (without the course's on-device
replacements); no train metrics; no ELBO metrics; no NaN guard; a `Learner` subclass that calls each per-batch event
only on the callbacks that define it (`OneDispatchLearner`); and the course's callbacks folded into that subclass.
It also times fastai's event dispatch itself (microseconds per event, and per batch).

`--fast` adds the fast paths: bf16 autocast (CPU or GPU), `torch.compile` of the model (and, in the plain loop, of the
loss with it), and on the CPU flushing denormal floats to zero, each for the plain loop and for vae_learner.

Timings on a shared machine are noisy, and the first run in a process pays one-off costs. So each loop trains once to
warm up, then the loops take turns, `--repeats` times, and the script prints the median seconds per epoch (training
plus validation) of each, wall-clock and CPU time of this process, the ratios, the overhead per batch against the plain
loop, and the final validation losses (which must agree within a draw's noise). It prints the load average with each
run: CPU time of a one-thread process counts the work it did and is far less disturbed by other jobs than wall time.

Usage (one thread, through the queue on the shared machine):
    OMP_NUM_THREADS=1 python benchmarks/bench_training.py --repeats 5 [--variants] [--fast] [--model mlp|conv|tiny]
        [--bs 128] [--epochs 1] [--root DIR] [--subset N] [--binarize static|none|dynamic] [--pythae PYTHON|none]
        [--bar] [--loops "bare fastai;vae_learner, one dispatch, fastai losses"]   # a ';'-separated choice of loops
        [--profile LOOP]   # cProfile of one loop's epoch instead: the top functions by own time
`--model tiny` (784-16-2) makes each batch's arithmetic small, so that each loop's own overhead per batch shows.
"""
import argparse, contextlib, cProfile, io, json, os, pstats, statistics, subprocess, sys, tempfile, time
from functools import partial
from pathlib import Path
import torch, torch.nn.functional as F
import vae_course  # noqa: F401  first: it silences fastai's import-time torch.jit deprecation warning
from fastai.callback.core import Callback, _inner_loop
from fastai.learner import AvgLoss, AvgSmoothLoss, Learner
from fastai.optimizer import OptimWrapper
from fastcore.basics import getcallable, noop
from vae_course.data import get_dls, set_seed
from bench_fast import cpu_bf16  # this folder: run as a script, it is on the path
from vae_course.model import VAE, ConvVAE, VAEOutput
from vae_course.training import vae_learner, _LossesToCPU

HERE = Path(__file__).parent

def load():
    "The 1-, 5- and 15-minute load averages, as text."
    return ' '.join(f'{x:.2f}' for x in os.getloadavg())

def neg_elbo(logits, x, mu, logvar):
    "Negative ELBO per image, averaged over the batch, written out independently of vae_course.losses."
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction='sum')
    kld = -0.5*torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kld)/len(x)

class WithLoss(torch.nn.Module):
    "The model and the loss as one module, so that `torch.compile` sees (and fuses) both."
    def __init__(self, model): super().__init__(); self.model = model
    def forward(self, x):
        out = self.model(x)
        return neg_elbo(out.logits.float(), x, out.mu.float(), out.logvar.float())

def autocast(device, on:bool):
    "bf16 autocast on `device` (CPU or GPU) when `on`, else nothing."
    return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()

def plain_loop(model, dls, epochs, lr, bf16=False, compiled=None):
    "Train and validate with a hand-written PyTorch loop; return the last epoch's validation loss."
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_of = WithLoss(model) if compiled is None else compiled
    for _epoch in range(epochs):
        model.train()
        for xb, _ in dls.train:
            with autocast(dls.device, bf16): loss = loss_of(xb)
            opt.zero_grad(); loss.backward(); opt.step()
        model.eval()
        total, n = torch.zeros((), device=dls.device), 0
        with torch.no_grad(), autocast(dls.device, bf16):
            for xb, _ in dls.valid: total += loss_of(xb).float()*len(xb); n += len(xb)
    return (total/n).item()


# Prototypes of changes to the course's learner, made from outside (no library file is edited).
_INNER = set(_inner_loop)

class OneDispatchLearner(Learner):
    """fastai's Learner calling each per-batch event only on the callbacks that define it, in their order.

    fastai's `Learner.__call__` sorts all the callbacks and calls each one on every event; a callback that lacks the
    event looks it up through two `GetAttr` delegations (callback -> learner -> model) that end in an AttributeError:
    about 6-8 us a callback, 8 events a training batch. This keeps the list of callbacks that define each per-batch
    event, rebuilt whenever a callback is added or removed and at every event outside the batch loop."""
    def _invalidate(self): self.__dict__.pop('_by_event', None)
    def add_cb(self, cb): self._invalidate(); return super().add_cb(cb)
    def remove_cb(self, cb): self._invalidate(); return super().remove_cb(cb)
    def __call__(self, event_name):
        if event_name not in _INNER: self._invalidate(); return super().__call__(event_name)
        by_event = self.__dict__.setdefault('_by_event', {})
        cbs = by_event.get(event_name)
        if cbs is None:
            cbs = by_event[event_name] = [cb for cb in self.cbs.sorted('order') if getcallable(cb, event_name) is not noop]
        for cb in cbs: cb(event_name)

class CPUAutocast(Callback):
    "bf16 autocast on the CPU for the forward pass and the loss (fastai's `MixedPrecision` autocasts on CUDA only)."
    order = 10
    def before_batch(self): self.ctx = torch.autocast('cpu', dtype=torch.bfloat16); self.ctx.__enter__()
    def after_pred(self): self.learn.pred = VAEOutput(*(t.float() for t in self.learn.pred))
    def after_loss(self): self.ctx.__exit__(None, None, None)
    def after_cancel_batch(self): self.after_loss()

def fastai_recorder_losses(learn):
    "Undo vae_learner's on-device `Recorder` losses: fastai's own AvgSmoothLoss and AvgLoss, which read each batch's loss."
    rec = learn.recorder
    rec.smooth_loss, rec.loss = AvgSmoothLoss(beta=rec.smooth_loss.beta), AvgLoss()
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, _LossesToCPU)])

def variant(name:str, learn, dls):
    "Apply the prototype `name` to a fresh vae_learner."
    if 'one dispatch' in name: learn.__class__ = OneDispatchLearner; learn._invalidate()
    if 'fastai losses' in name: fastai_recorder_losses(learn)
    if 'no train metrics' in name: learn.recorder.train_metrics = False
    if 'no ELBO metrics' in name: learn.metrics = []
    if 'no guard' in name: learn.remove_cb(learn.nan_guard)
    if 'no monitor' in name: learn.remove_cb(learn.collapse_monitor)
    if 'bf16' in name and dls.device.type == 'cpu': learn.add_cb(CPUAutocast())  # on a GPU: vae_learner's precision='bf16'
    return learn

VARIANTS = ['vae_learner, bar', 'vae_learner, fastai losses', 'vae_learner, no train metrics', 'vae_learner, no ELBO metrics',
            'vae_learner, no guard', 'vae_learner, no guard, no monitor, no ELBO metrics', 'vae_learner, one dispatch',
            'bare fastai, one dispatch']
FAST = ['plain bf16', 'plain compiled', 'vae_learner bf16', 'vae_learner compiled', 'vae_learner, one dispatch, bf16']


def fit_learner(learn, epochs, bar):
    "Fit a fastai learner; return its last validation loss."
    if bar:  # fastai's console bar in a script (a notebook draws HTML instead): its cost, not its output
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()): learn.fit(epochs)
    else:
        with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn.recorder.values[-1][learn.recorder.metric_names[1:].index('valid_loss')]

def bare_learner(dls, model, cls=Learner):
    return cls(dls, model, loss_func=lambda out, x: neg_elbo(out.logits, x, out.mu, out.logvar),
               opt_func=partial(OptimWrapper, opt=torch.optim.Adam), lr=1e-3)

class Runner:
    "Builds each loop once (a model per loop, reset to the same seeded weights before every run) and times one run of it."
    def __init__(self, a):
        self.a = a
        set_seed(0)
        self.dls = get_dls('mnist', bs=a.bs, root=a.root, subset=a.subset, seed=0, binarize=a.binarize, device=a.device)
        set_seed(0); self.init = {k: v.clone() for k, v in a.Model().state_dict().items()}
        self.models, self.compiled = {}, {}

    def model(self, loop):
        m = self.models.get(loop)
        if m is None: m = self.models[loop] = self.a.Model().to(self.dls.device)
        m.load_state_dict(self.init)
        return m

    def train_fn(self, loop):
        a, dls, model = self.a, self.dls, self.model(loop)
        if loop.startswith('plain'):
            compiled = None
            if 'compiled' in loop:
                if loop not in self.compiled: self.compiled[loop] = torch.compile(WithLoss(model), dynamic=False)
                compiled = self.compiled[loop]
            return lambda: plain_loop(model, dls, a.epochs, 1e-3, bf16='bf16' in loop, compiled=compiled)
        if loop.startswith('bare fastai'):
            learn = bare_learner(dls, model, OneDispatchLearner if 'one dispatch' in loop else Learner)
        else:
            if 'compiled' in loop:
                if loop not in self.compiled: self.compiled[loop] = torch.compile(model, dynamic=False)
                model = self.compiled[loop]
            cuda = dls.device.type == 'cuda'
            # auto: bf16 on a GPU that has it
            precision = 'bf16' if 'bf16' in loop and cuda else 'fp32' if 'fp32' in loop else 'auto'
            learn = variant(loop, vae_learner(dls, model, precision=precision), dls)
        return lambda: fit_learner(learn, a.epochs, a.bar or ', bar' in loop)

    def run(self, loop):
        "(wall-clock and CPU seconds per epoch, final validation loss) of one run of `loop`."
        if loop == 'pythae': return self.pythae()
        torch.set_flush_denormal('flush' in loop)
        self.dls.train.generator.manual_seed(0); set_seed(0)
        train = self.train_fn(loop)
        start, cpu = time.perf_counter(), time.process_time(); loss = train()
        if self.dls.device.type == 'cuda': torch.cuda.synchronize()
        torch.set_flush_denormal(False)
        return (time.perf_counter() - start)/self.a.epochs, (time.process_time() - cpu)/self.a.epochs, loss

    def pythae(self):
        "One run of bench_pythae.py in Pythae's environment, on the same tensors (saved once to a temporary file)."
        if not hasattr(self, 'pt'):
            self.pt = Path(tempfile.mkdtemp())/'images.pt'
            torch.save({'train': self.dls.train.x.cpu(), 'valid': self.dls.valid.x.cpu()}, self.pt)
        cmd = [self.a.pythae, str(HERE/'bench_pythae.py'), '--data', str(self.pt), '--epochs', str(self.a.epochs),
               '--bs', str(self.a.bs), '--threads', str(torch.get_num_threads()), '--device', self.dls.device.type]
        res = subprocess.run(cmd, capture_output=True, text=True,
                             env={**os.environ, 'OMP_NUM_THREADS': str(torch.get_num_threads())})
        if res.returncode: raise RuntimeError(f"bench_pythae.py failed:\n{res.stderr[-3000:]}")
        r = json.loads(res.stdout.strip().splitlines()[-1])
        return r['wall'], r['cpu'], r['valid_neg_elbo']


def dispatch_cost(dls, model, n:int=20000)->dict:
    "Microseconds per per-batch event in a fresh vae_learner, with fastai's dispatch and with OneDispatchLearner."
    out = {}
    for cls in (Learner, OneDispatchLearner):
        learn = vae_learner(dls, model); learn.__class__ = cls
        learn.training, learn.yb, learn.iter, learn.epoch = True, (), 0, 0  # no metrics accumulate: just the dispatch
        for ev in ('after_pred', 'before_step'):  # events that no course callback and no training callback defines
            start = time.process_time()
            for _ in range(n): learn(ev)
            out[(cls.__name__, ev)] = (time.process_time() - start)/n*1e6
    return out

def profile(runner, loop, top:int=30):
    "cProfile of one run of `loop` (after a warm-up run): the functions with the most own time."
    runner.run(loop)
    train = runner.train_fn(loop)
    pr = cProfile.Profile(); pr.enable(); train(); pr.disable()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats('tottime').print_stats(top)
    print(s.getvalue())

def report(loops, times, cpus, losses, runner, a):
    med = {l: statistics.median(ts) for l, ts in times.items()}
    cpu = {l: statistics.median(cs) for l, cs in cpus.items()}
    # the ratio to the plain loop within each round (the loops of a round ran minutes apart, under the same load), then its median
    ratio = {l: statistics.median(c/p for c, p in zip(cs, cpus['plain'])) for l, cs in cpus.items()}
    n_batches = len(runner.dls.train) + len(runner.dls.valid)
    w = max(map(len, loops)) + 2
    print(f"\n{'training loop':<{w}}{'wall s/epoch':>13}{'vs plain':>9}{'CPU s/epoch':>12}{'vs plain':>9}{'vs bare':>8}"
          f"{'per round':>10}{'us/batch vs plain':>18}{'valid -ELBO':>12}   (medians of {a.repeats} runs; load {load()})")
    for l in loops:
        bare = cpu.get('bare fastai')
        print(f"{l:<{w}}{med[l]:>13.2f}{med[l]/med['plain']:>9.3f}{cpu[l]:>12.2f}{cpu[l]/cpu['plain']:>9.3f}"
              f"{cpu[l]/bare if bare else float('nan'):>8.3f}{ratio[l]:>10.3f}{(ratio[l] - 1)*cpu['plain']/n_batches*1e6:>18.0f}"
              f"{losses[l]:>12.2f}")
    print("per round: the median over rounds of CPU time / the plain loop's in the same round; us/batch from it")
    for what, m in (('wall-clock', med), ('CPU', cpu)):
        peers = ', '.join(f"{l} {m[l]/m['plain']:.3f}" for l in ('pythae', 'bare fastai', 'vae_learner') if l in m)
        print(f"{what} against the plain loop: {peers}")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--epochs', type=int, default=1, help='epochs per timed run')
    p.add_argument('--repeats', type=int, default=5, help='timed runs of each loop, taken in turns')
    p.add_argument('--root', default=None, help='data folder (default: the usual search, see load_dataset)')
    p.add_argument('--subset', type=int, default=None, help='number of training images (default: all)')
    p.add_argument('--binarize', default='static', help="pixel protocol: 'static' (default), 'dynamic', 'fixed' or 'none'")
    p.add_argument('--model', choices=['mlp', 'conv', 'tiny'], default='mlp',
                   help="tiny: an MLP VAE 784-16-2, whose batches cost little, so that each loop's own overhead per batch shows")
    p.add_argument('--bs', type=int, default=128, help='training batch size')
    p.add_argument('--device', default=None, help="default: vae_course's (cuda, mps, then cpu)")
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    p.add_argument('--variants', action='store_true', help='also time the prototypes of changes to vae_learner')
    p.add_argument('--fast', action='store_true',
                   help='also time the fast paths: bf16 autocast, torch.compile, flushed denormals')
    p.add_argument('--loops', default=None, help="a ';'-separated list of loops to time instead (plain is always included)")
    p.add_argument('--pythae', default=os.path.expanduser('~/venvs/pythae/bin/python'), help="Pythae's Python ('none': skip)")
    p.add_argument('--bar', action='store_true',
                   help="show fastai's progress bar in every learner (off by default, as in a script)")
    p.add_argument('--profile', default=None, help='profile one loop instead of timing them all')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    a.binarize = None if a.binarize == 'none' else a.binarize
    a.Model = {'mlp': VAE, 'conv': ConvVAE, 'tiny': partial(VAE, 2, 16)}[a.model]
    runner = Runner(a)
    if a.profile: profile(runner, a.profile); sys.exit()
    loops = ['plain', 'bare fastai', 'vae_learner']
    if a.pythae != 'none' and Path(a.pythae).exists() and a.model == 'mlp': loops.append('pythae')
    if a.variants: loops += VARIANTS
    if a.fast: loops += FAST + (['plain flush', 'vae_learner flush'] if runner.dls.device.type == 'cpu' else ['vae_learner fp32'])
    if a.loops: loops = ['plain'] + [l.strip() for l in a.loops.split(';') if l.strip() not in ('plain', '')]
    dls = runner.dls
    print(f"data: {dls.source}, binarize {a.binarize}; {dls.train.n:,} training / {dls.valid.n:,} validation images "
          f"({len(dls.train)} + {len(dls.valid)} batches); device {dls.device}; torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; {cpu_bf16()}; model {a.model}; batch size {a.bs}; {a.epochs} epoch(s) a run, "
          f"{a.repeats} runs each after a warm-up; load {load()}", flush=True)
    if a.variants:
        d = dispatch_cost(dls, runner.model('dispatch'))
        print('fastai event dispatch, CPU us per event with no callback defining it: ' +
              ', '.join(f"{cls} {ev} {us:.1f}" for (cls, ev), us in d.items()), flush=True)
    for loop in list(loops):  # warm-up (and compilation); a loop that fails is reported and left out
        try: runner.run(loop)
        except Exception as e:
            print(f"{loop}: failed, left out: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}", flush=True)
            loops.remove(loop)
    times, cpus, losses = {l: [] for l in loops}, {l: [] for l in loops}, {}
    for r in range(a.repeats):
        for loop in loops:
            t, c, losses[loop] = runner.run(loop); times[loop].append(t); cpus[loop].append(c)
        print(f"run {r + 1} (load {load()}): " + ', '.join(f"{l} {times[l][-1]:.2f} ({cpus[l][-1]:.2f} CPU)" for l in loops)
              + ' s/epoch', flush=True)
    report(loops, times, cpus, losses, runner, a)
