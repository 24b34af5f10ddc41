"""Faster than a plain fp32 loop: bf16 autocast, torch.compile and flushed denormals, for speed and at equal quality.

Two measurements, each of a plain PyTorch training loop (the course's MLP encoder and decoder modules; the loss written
out here: the negative ELBO for k=1, the negative IWAE bound for k > 1; Adam; statically binarized full MNIST):

- `--sweep`: seconds per training step (forward, backward, Adam) of each path against fp32, over model widths, IWAE's
  k and batch sizes, to find where bf16 pays (where matrix products dominate the step) and where it does not;
- `--quality`: 10 epochs on 3 seeds of each path, seconds per epoch and the final validation negative ELBO (one draw
  of z per image, nats per image) with its spread over the seeds, for 784-400-20 (k=1) and 784-200-200-50 (k=5), and
  larger batches with a scaled learning rate (reported at equal epochs).

The paths: `fp32` (the reference), `bf16` (torch.autocast on the CPU or GPU: products in bf16, the loss in fp32),
`compiled` (torch.compile of the model and the loss together), `compiled bf16`, and on the CPU `flush` (fp32 with
`torch.set_flush_denormal(True)`: Adam's moments of rarely used weights decay into denormal floats, which are up to 20
times slower to compute with on x86). Paths take turns; medians of `--repeats` runs; the load average is printed.

Usage (one thread, through the queue on the shared machine):
    OMP_NUM_THREADS=1 python benchmarks/bench_fast.py --sweep [--repeats 5] [--steps 40]
    OMP_NUM_THREADS=1 python benchmarks/bench_fast.py --quality [--epochs 10] [--seeds 0 1 2] \
        [--configs mlp400 iwae5 mlp400-bs512]
"""
import argparse, contextlib, math, os, statistics, time
import torch, torch.nn.functional as F
import vae_course  # noqa: F401  first: it silences fastai's import-time torch.jit deprecation warning
from vae_course.data import get_dls, set_seed
from vae_course.model import VAE

def load():
    "The 1-, 5- and 15-minute load averages, as text."
    return ' '.join(f'{x:.2f}' for x in os.getloadavg())

def cpu_bf16()->str:
    "The CPU's bf16 instructions, as text: without them bf16 autocast is emulated, and slower than fp32."
    try:
        with open('/proc/cpuinfo') as f: flags = set(f.read().split())
    except OSError: return 'bf16 instructions unknown (no /proc/cpuinfo)'
    return 'bf16 instructions: ' + (', '.join(sorted(flags & {'avx512_bf16', 'amx_bf16'})) or 'none')

class Objective(torch.nn.Module):
    "The training loss of a VAE's encoder and decoder, written out: negative ELBO (k=1) or negative IWAE bound (k>1), per image."
    def __init__(self, model, k:int=1): super().__init__(); self.model, self.k = model, k
    def forward(self, x):                                                          # (B,1,28,28) in {0,1}
        mu, logvar = self.model.encoder(x)                                         # (B,Z) each
        std, xf = (0.5*logvar).exp(), x.flatten(1)
        if self.k == 1:
            z = mu + std*torch.randn_like(mu)
            logits = self.model.decoder(z).flatten(1).float()                      # (B,D)
            bce = F.binary_cross_entropy_with_logits(logits, xf, reduction='sum')
            return (bce - 0.5*torch.sum(1 + logvar - mu.pow(2) - logvar.exp()).float())/len(x)
        eps = torch.randn((self.k, *mu.shape), dtype=mu.dtype, device=mu.device)  # (k,B,Z)
        z = mu + std*eps
        logits = self.model.decoder(z.flatten(0, 1)).view(self.k, len(x), -1).float()  # (k,B,D)
        log_px = -F.binary_cross_entropy_with_logits(logits, xf.expand_as(logits), reduction='none').sum(-1)  # (k,B)
        log_w = log_px + 0.5*((eps*eps).sum(-1) - (z*z).sum(-1) + logvar.sum(-1)).float()  # log p(z) - log q(z|x)
        return -(torch.logsumexp(log_w, 0) - math.log(self.k)).mean()

def elbo_valid(model, dls)->float:
    "Validation negative ELBO, nats per image, one draw of z per image, in fp32."
    objective = Objective(model, 1).eval()
    total, n = 0., 0
    with torch.no_grad():
        for xb, _ in dls.valid: total += objective(xb).item()*len(xb); n += len(xb)
    return total/n

class Path:
    "One way to run the same training step."
    def __init__(self, name:str, model, k:int, device):
        self.name, self.device = name, device
        objective = Objective(model, k)
        self.loss = torch.compile(objective, dynamic=False) if 'compiled' in name else objective
        self.bf16, self.flush = 'bf16' in name, 'flush' in name
    def context(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
    def steps(self, opt, batches):
        torch.set_flush_denormal(self.flush)
        try:
            for xb in batches:
                with self.context(): loss = self.loss(xb)
                opt.zero_grad(); loss.backward(); opt.step()
            if self.device.type == 'cuda': torch.cuda.synchronize()
        finally: torch.set_flush_denormal(False)

def paths_for(device)->list:
    return ['fp32', 'bf16', 'compiled', 'compiled bf16'] + (['flush'] if device.type == 'cpu' else [])

SWEEP = [  # (hidden, latent, k, bs)
    ((400,), 20, 1, 128), ((400,), 20, 1, 1024), ((200, 200), 50, 1, 128), ((200, 200), 50, 5, 128),
    ((200, 200), 50, 50, 128), ((1024, 1024), 50, 1, 128), ((1024, 1024), 50, 5, 128), ((400,), 20, 5, 1024),
]

def sweep(a, dls):
    "Seconds per step of each path against fp32, over widths, k and batch sizes."
    x = dls.train.x
    print(f"{'model':<22}{'k':>4}{'bs':>6}" + ''.join(f"{p + ' ms':>17}" for p in paths_for(dls.device))
          + ''.join(f"{p + ' / fp32':>20}" for p in paths_for(dls.device)[1:]) + f"   (medians of {a.repeats}; load {load()})")
    for hidden, latent, k, bs in SWEEP:
        torch._dynamo.reset()  # every config compiles afresh (dynamo would stop recompiling after its limit)
        set_seed(0); model = VAE(latent, hidden).to(dls.device)
        init = {n: v.clone() for n, v in model.state_dict().items()}
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches = [x[i*bs:(i+1)*bs] for i in range(a.steps)]
        paths = [Path(p, model, k, dls.device) for p in paths_for(dls.device)]
        for p in list(paths):  # warm-up and compilation; a path that fails is reported and left out
            try: p.steps(opt, batches[:3])
            except Exception as e:
                print(f"  {p.name} failed, left out: {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"); paths.remove(p)
        times = {p.name: [] for p in paths}
        for _ in range(a.repeats):
            for p in paths:
                model.load_state_dict(init); opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                start = time.process_time() if dls.device.type == 'cpu' else time.perf_counter()
                p.steps(opt, batches)
                spent = (time.process_time() if dls.device.type == 'cpu' else time.perf_counter()) - start
                times[p.name].append(spent/a.steps*1e3)
        med = {n: statistics.median(t) for n, t in times.items()}
        name = f"784-{'-'.join(map(str, hidden))}-{latent}"
        print(f"{name:<22}{k:>4}{bs:>6}" + ''.join(f"{med.get(p, float('nan')):>17.2f}" for p in paths_for(dls.device))
              + ''.join(f"{med.get(p, float('nan'))/med['fp32']:>20.2f}" for p in paths_for(dls.device)[1:]), flush=True)

QUALITY = {  # name: (hidden, latent, k, bs, lr)
    'mlp400': ((400,), 20, 1, 128, 1e-3), 'iwae5': ((200, 200), 50, 5, 128, 1e-3),
    'mlp400-bs512': ((400,), 20, 1, 512, 2e-3), 'mlp400-bs1024': ((400,), 20, 1, 1024, 2.8e-3),
}

def quality(a):
    "10 epochs on 3 seeds of each path: seconds per epoch and the final validation negative ELBO."
    for cfg in a.configs:
        hidden, latent, k, bs, lr = QUALITY[cfg]
        dls = get_dls('mnist', bs=bs, root=a.root, binarize='static', seed=0, device=a.device, subset=a.subset)
        names = paths_for(dls.device) if a.paths is None else a.paths
        print(f"\n{cfg}: 784-{'-'.join(map(str, hidden))}-{latent}, k={k}, batch size {bs}, Adam lr {lr:g}, {a.epochs} epochs "
              f"of {dls.train.n:,} training images ({dls.valid.n:,} validation), "
              f"seeds {a.seeds}; paths take turns; load {load()}", flush=True)
        res = {n: dict(s=[], loss=[]) for n in names}
        for seed in a.seeds:
            for n in names:
                torch._dynamo.reset(); set_seed(seed); dls.train.generator.manual_seed(seed)
                model = VAE(latent, hidden).to(dls.device)
                opt = torch.optim.Adam(model.parameters(), lr=lr)
                p, spent = Path(n, model, k, dls.device), []
                for _epoch in range(a.epochs):
                    start = time.process_time() if dls.device.type == 'cpu' else time.perf_counter()
                    p.steps(opt, (xb for xb, _ in dls.train))
                    spent.append((time.process_time() if dls.device.type == 'cpu' else time.perf_counter()) - start)
                res[n]['s'].append(statistics.median(spent[1:] or spent))  # the first epoch holds the compilation
                res[n]['loss'].append(elbo_valid(model, dls))
                print(f"  seed {seed} {n}: {res[n]['s'][-1]:.2f} s/epoch, valid -ELBO {res[n]['loss'][-1]:.2f} "
                      f"(epochs {' '.join(f'{s:.1f}' for s in spent)}; load {load()})", flush=True)
        ref = statistics.median(res['fp32']['s']) if 'fp32' in res else float('nan')
        print(f"{'path':<16}{'s/epoch':>9}{'vs fp32':>9}{'valid -ELBO, mean ± sd over seeds':>36}")
        for n, r in res.items():
            sd = statistics.stdev(r['loss']) if len(r['loss']) > 1 else float('nan')
            print(f"{n:<16}{statistics.median(r['s']):>9.2f}{statistics.median(r['s'])/ref:>9.3f}"
                  f"{statistics.mean(r['loss']):>28.2f} ± {sd:.2f}")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--sweep', action='store_true', help='seconds per step of each path over widths, k and batch sizes')
    p.add_argument('--quality', action='store_true', help='10 epochs on 3 seeds of each path: speed and final loss')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--steps', type=int, default=40, help='--sweep: training steps per timed run')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--configs', nargs='+', default=['mlp400', 'iwae5', 'mlp400-bs512'], choices=list(QUALITY))
    p.add_argument('--paths', nargs='+', default=None, help='--quality: the paths to run (default: all of this device)')
    p.add_argument('--subset', type=int, default=None, help='--quality: train on this many images (default: all 60,000)')
    p.add_argument('--root', default=None)
    p.add_argument('--device', default=None)
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if not (a.sweep or a.quality): p.error('give --sweep or --quality (or both)')
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {cpu_bf16()}; load {load()}")
    if a.sweep: sweep(a, get_dls('mnist', bs=128, root=a.root, binarize='static', seed=0, device=a.device))
    if a.quality: quality(a)
