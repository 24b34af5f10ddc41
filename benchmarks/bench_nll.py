"""Likelihoods under the standard protocol of binarized MNIST: the shipped models' figures, and how fast they are measured.

The protocol: dynamically binarized MNIST (training images re-drawn from Bernoulli(pixel) every time they are seen),
the importance-weighted NLL with K=5,000 samples on all 10,000 test images, binarized once with evaluation seed 0;
in nats per image. The shipped models were trained and measured by `tools/train_binarized.py`, which records the
command, the epochs and the run time.

`--speed` measures the estimator itself on the shipped `mnist-binarized-mlp-z50` model (784-200-200-50), at one thread:
- the peak: this machine's fp32 and bf16 throughput (GFLOP/s) for the decoder's own matrix products, (M,50)x(50,200),
  (M,200)x(200,200) and (M,200)x(200,784) with their bias, and its elementwise softplus over (M,784) logits;
- the FLOPs of the estimator: the decoder's products, 2*(50*200 + 200*200 + 200*784) = 413,600 per code, K codes per
  image (the encoder runs once per image: negligible);
- three estimators on the same images: the naive loop of issue 20 (one image at a time, chunks of 1,000 draws through
  the public `encode`/`decode`), today's `evaluate_vae` (its importance-weighted part, `iw_nll_dataset`), and the
  prototype `fast_iw_nll` below (large batched products over (n*B) codes, the chunk chosen from a memory budget,
  log p(x|z) as sum x*l - softplus(l) with the sum x*l as a batched product, log p(z) - log q(z|x) from the noise, no
  per-chunk reads or checks, logsumexp accumulated over the chunks) in fp32, and in bf16 for the decoder;
- for each: seconds per image, GFLOP/s, the fraction of the fp32 peak, and the standard protocol's time (10,000 images)
  extrapolated from the subset;
- the bias of bf16 against fp32 on the same draws, per image.
`--protocol` runs the fast estimator on the full standard protocol (K=5,000, all 10,000 test images) and times it.

Usage (one thread, through the queue on the shared machine):
    python benchmarks/bench_nll.py                       # the stored measurements of the shipped binarized models
    python benchmarks/bench_nll.py --measure             # measure them again now with evaluate_vae (slow: tens of minutes)
    python benchmarks/bench_nll.py --measure --k 500 --images 1000   # a quicker, noisier check of the same numbers
    python benchmarks/bench_nll.py --run runs/bin-iwae   # also a run folder of tools/train_binarized.py (its eval.json)
    OMP_NUM_THREADS=1 python benchmarks/bench_nll.py --speed [--images 200] [--repeats 5] [--k 5000]
    OMP_NUM_THREADS=1 python benchmarks/bench_nll.py --protocol [--estimators today fast fast-bf16] \
        [--budget-mb 64] [--device cuda]
"""
import argparse, json, math, os, statistics, time
from pathlib import Path
import pandas as pd, torch, torch.nn.functional as F
from torch import Tensor
from vae_course.data import binarize_once, load_dataset, to_float
from vae_course.explorer import _meta, list_pretrained, load_pretrained
from vae_course.metrics import PUBLISHED_NLL, evaluate_vae, iw_nll_dataset

REFERENCE = 'mnist-binarized-mlp-z50'

def load():
    "The 1-, 5- and 15-minute load averages, as text."
    return ' '.join(f'{x:.2f}' for x in os.getloadavg())


# The stored figures of the shipped models (what this script did before --speed).
def row(name, m:dict, run:dict)->dict:
    "One table row from a measurement `m` (an eval.json) and the run's record."
    hidden = m.get('hidden') or run.get('config', {}).get('n_hidden')
    hidden = '-'.join(map(str, hidden if isinstance(hidden, list) else [hidden]))
    return dict(model=name, architecture=f"784-{hidden}-{m['n_latent']} MLP (ReLU)",
                training=f"{run.get('epochs')} epochs, {m.get('objective', 'ELBO')}", nll=round(m['iw_nll'], 2),
                se=round(m['iw_nll_se'], 2), K=m['iw_k'], images=m['iw_images'], source='this course')

def test_images()->Tensor: # (10000,1,28,28) in {0,1}
    "The protocol's test images: MNIST's test split, binarized once with evaluation seed 0."
    return binarize_once(to_float(load_dataset('mnist', 'test').images), 'dynamic', 0)

def measure(model, k:int, images:int|None)->dict:
    start = time.time()
    m = evaluate_vae(model, test_images(), k=k, iw_images=images, ks=(), seed=0, progress=True)
    print(f"  measured in {time.time() - start:.0f} s")
    return m

def stored(a):
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
    print("\nnats per image; dynamically binarized MNIST; importance-weighted NLL (lower is better); "
          "se: standard error over test images")


# The prototype: the body of the future `VAE.log_weights`, and the evaluation loop around it.
def bernoulli_log_px(
    logits:Tensor, # (...,D) decoder logits
    x:Tensor,      # (B,D) images in [0,1], broadcast against the logits
)->Tensor:         # (...) log p(x|z) = sum_d x*l - softplus(l), in nats
    "The Bernoulli log-likelihood, sum x*l - softplus(l), as two passes: a batched product and a softplus."
    return torch.einsum('...bd,bd->...b', logits, x) - F.softplus(logits).sum(-1)

def _group(d:int)->int: return max(g for g in range(1, 65) if d % g == 0)  # 784 -> 49: each product of 49 is below 2^49

def bernoulli_log_px_fused(logits:Tensor, x:Tensor)->Tensor:
    """The same sum, written for one fused pass (compile it): softplus(l) = relu(l) + log1p(exp(-|l|)), and the sum of the
    log1p terms as the log of their product in groups of at most 64 (each factor is in (1,2]): one exp per pixel, one log
    per group, instead of an exp and a log per pixel."""
    g = _group(logits.shape[-1])
    log1p_sum = (1 + torch.exp(-logits.abs())).unflatten(-1, (-1, g)).prod(-1).log().sum(-1)
    return (logits*x - logits.clamp(min=0)).sum(-1) - log1p_sum

_fused = {}
def _log_px(fused:bool):
    "The likelihood pass: eager, or the fused form compiled once (torch.compile; needs a C++ compiler on the CPU)."
    if not fused: return bernoulli_log_px
    if 'f' not in _fused: _fused['f'] = torch.compile(bernoulli_log_px_fused, dynamic=True)
    return _fused['f']

def fast_log_weights(
    model,             # an MLP VAE with a Bernoulli likelihood: `encoder(x) -> (mu, logvar)`, `decoder(z) -> logits`
    x:Tensor,          # (B,C,H,W) images in [0,1]
    k:int,             # draws per image
    mu:Tensor|None=None, logvar:Tensor|None=None, # (B,Z) the posterior, if already computed (the evaluation loop does)
    generator:torch.Generator|None=None, # draws the noise
    bf16:bool=False,   # run the decoder's products in bf16 (the likelihood and the sums stay fp32)
    fused:bool=False,  # the likelihood as one compiled pass (`bernoulli_log_px_fused`)
)->Tensor:             # (k,B) log p(x|z_k) + log p(z_k) - log q(z_k|x), in nats
    "Log importance weights of k draws per image: one batched pass of k*B codes through the decoder."
    if mu is None: mu, logvar = model.encoder(x)                                  # (B,Z) each, no checks
    eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device)     # (k,B,Z)
    z = torch.addcmul(mu, eps, (0.5*logvar).exp())                               # (k,B,Z) = mu + sigma*eps
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model.decoder(z.view(-1, z.shape[-1]))                          # (k*B,C,H,W)
    logits = logits.float().view(k, len(x), -1)                                   # (k,B,D)
    log_px = _log_px(fused)(logits, x.flatten(1))                                # (k,B): sum x*l - softplus(l)
    # log p(z) - log q(z|x) = -|z|^2/2 + |eps|^2/2 + sum(logvar)/2: the log(2 pi) terms cancel
    return log_px + 0.5*((eps*eps).sum(-1) - (z*z).sum(-1) + logvar.sum(-1))

def fast_iw_nll(
    model,             # as for `fast_log_weights`
    x:Tensor,          # (N,C,H,W) images in [0,1]
    k:int=5000,        # importance samples per image
    bs:int=500,        # images per pass
    budget_mb:float=64,# memory for one chunk's logits (k_chunk*bs*D floats), which sets the draws per pass
    generator:torch.Generator|None=None,
    bf16:bool=False,   # the decoder's products in bf16
    fused:bool=False,  # the likelihood as one compiled pass
)->Tensor:             # (N,) -log (1/k) sum_k w_k per image, in nats, on the CPU
    "The importance-weighted NLL of every image, streaming: logsumexp accumulated over chunks of draws."
    out = []
    with torch.no_grad():
        model.eval()
        for xb in x.split(bs):
            n = max(1, min(k, int(budget_mb*2**20//(4*len(xb)*xb[0].numel()))))  # draws per pass
            mu, logvar = model.encoder(xb)
            m = torch.full((len(xb),), -math.inf, device=xb.device); s = torch.zeros(len(xb), device=xb.device)
            for start in range(0, k, n):
                lw = fast_log_weights(model, xb, min(n, k - start), mu, logvar, generator, bf16, fused)  # (n,B)
                m_new = torch.maximum(m, lw.amax(0))
                s = s*torch.exp(m - m_new) + torch.exp(lw - m_new).sum(0)
                m = m_new
            out.append(-(m + s.log() - math.log(k)))
    return torch.cat(out).cpu()


# The references it is measured against.
def naive_iw_nll(model, x:Tensor, k:int=5000, chunk:int=1000, generator=None)->Tensor:
    "Issue 20's naive loop: one image at a time, chunks of `chunk` draws through the public encode/decode, nothing else."
    out = []
    with torch.no_grad():
        model.eval()
        for xi in x.split(1):
            mu, logvar = model.encode(xi)                                  # (1,Z)
            std, lws = (0.5*logvar).exp(), []
            for start in range(0, k, chunk):
                eps = torch.randn(min(chunk, k - start), mu.shape[1], generator=generator)
                z = mu + std*eps                                           # (n,Z)
                logits = model.decode(z)                                   # (n,1,28,28)
                log_px = -F.binary_cross_entropy_with_logits(logits, xi.expand_as(logits), reduction='none').flatten(1).sum(1)
                log_pz = -0.5*(z.pow(2) + math.log(2*math.pi)).sum(1)
                log_qz = -0.5*(eps.pow(2) + logvar + math.log(2*math.pi)).sum(1)
                lws.append(log_px + log_pz - log_qz)
            out.append(-(torch.logsumexp(torch.cat(lws), 0) - math.log(k)))
    return torch.stack(out)

def today_iw_nll(model, x:Tensor, k:int=5000, generator=None)->Tensor:
    "Today's library: the importance-weighted part of `evaluate_vae` (`iw_nll_dataset`, batches of 256, its own chunks)."
    return iw_nll_dataset(model, x, k, generator=generator)


# The machine's peak for these shapes.
DECODER = ((50, 200), (200, 200), (200, 784))  # (in, out) of the reference decoder's layers

def _time(f, min_s:float=0.3)->float:
    "Seconds per call of f (CPU time of this one-thread process), over at least `min_s`."
    f(); n, start = 0, time.process_time()
    while (spent := time.process_time() - start) < min_s: f(); n += 1
    return spent/n

def peak(m:int)->dict:
    "GFLOP/s of the decoder's products (with their bias) for M=m rows, fp32 and bf16, and ns per softplus element."
    res = {}
    for dtype in (torch.float32, torch.bfloat16):
        total_flop = total_s = 0.
        for k_in, k_out in DECODER:
            a, w, b = torch.randn(m, k_in, dtype=dtype), torch.randn(k_out, k_in, dtype=dtype), torch.randn(k_out, dtype=dtype)
            s = _time(lambda a=a, w=w, b=b: F.linear(a, w, b))
            res[(str(dtype)[6:], f'{m}x{k_in}x{k_out}')] = 2*m*k_in*k_out/s/1e9
            total_flop, total_s = total_flop + 2*m*k_in*k_out, total_s + s
        res[(str(dtype)[6:], 'decoder')] = total_flop/total_s/1e9
    logits = torch.randn(m, 784)
    res[('float32', 'softplus ns/element')] = _time(lambda: F.softplus(logits).sum(-1))/logits.numel()*1e9
    return res

FLOP_PER_CODE = 2*sum(i*o for i, o in DECODER)  # 413,600

def speed(a):
    torch.set_num_threads(1)
    model = load_pretrained(REFERENCE, device='cpu')
    x = test_images()[:a.images]
    a.budget_mb = a.budget_mb or 64
    n_chunk = max(1, min(a.k, int(a.budget_mb*2**20//(4*min(a.bs, len(x))*784))))
    print(f"{REFERENCE}, K={a.k:,}, {len(x)} test images; torch {torch.__version__}, 1 thread; load {load()}")
    print(f"FLOPs per code {FLOP_PER_CODE:,} (decoder products); per image {FLOP_PER_CODE*a.k/1e9:.2f} GFLOP; "
          f"standard protocol {FLOP_PER_CODE*a.k*10000/1e12:.1f} TFLOP")
    print(f"\npeak: the decoder's products at M=1,000 (the naive loop's), 8,192 (today's) and {n_chunk*min(a.bs, len(x)):,} "
          f"(the prototype's: {n_chunk} draws x {min(a.bs, len(x))} images, a {a.budget_mb:g} MB budget)")
    peaks = {}
    for m in (1000, 8192, n_chunk*min(a.bs, len(x))):
        for key, v in peak(m).items(): peaks[(m, *key)] = v
    for m in sorted({k[0] for k in peaks}):
        print(f"  M={m:>6,}: " + ', '.join(f"{dt} {shape} {v:.1f}" + ('' if 'ns' in shape else ' GFLOP/s')
                                           for (mm, dt, shape), v in peaks.items() if mm == m))
    fp32_peak = max(v for (m, dt, shape), v in peaks.items() if dt == 'float32' and shape == 'decoder')
    bf16_peak = max(v for (m, dt, shape), v in peaks.items() if dt == 'bfloat16' and shape == 'decoder')
    print(f"fp32 peak for the decoder's mix of products: {fp32_peak:.1f} GFLOP/s (bf16: {bf16_peak:.1f}); load {load()}")

    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ests = {'naive loop (issue 20)': lambda: naive_iw_nll(model, x, a.k, generator=g()),
            "today's iw_nll_dataset": lambda: today_iw_nll(model, x, a.k, generator=g()),
            'fast_iw_nll fp32': lambda: fast_iw_nll(model, x, a.k, a.bs, a.budget_mb, generator=g()),
            'fast_iw_nll bf16': lambda: fast_iw_nll(model, x, a.k, a.bs, a.budget_mb, generator=g(), bf16=True),
            'fast_iw_nll fused': lambda: fast_iw_nll(model, x, a.k, a.bs, a.budget_mb, generator=g(), fused=True),
            'fast_iw_nll fused bf16': lambda: fast_iw_nll(model, x, a.k, a.bs, a.budget_mb, generator=g(), bf16=True, fused=True)}
    times, nll = {e: [] for e in ests}, {}
    for r in range(a.repeats):  # the estimators take turns
        for e, f in ests.items():
            start = time.process_time(); nll[e] = f(); times[e].append(time.process_time() - start)
        print(f"run {r + 1} (load {load()}): " + ', '.join(f"{e} {times[e][-1]:.1f} s" for e in ests), flush=True)
    w = max(map(len, ests)) + 2
    print(f"\n{'estimator':<{w}}{'s (CPU)':>9}{'ms/image':>10}{'GFLOP/s':>9}{'of fp32 peak':>13}{'vs naive':>9}"
          f"{'protocol, min':>14}{'NLL':>9}   (medians of {a.repeats} runs, {len(x)} images, K={a.k:,}; load {load()})")
    naive = statistics.median(times['naive loop (issue 20)'])
    for e in ests:
        t = statistics.median(times[e])
        gflops = FLOP_PER_CODE*a.k*len(x)/t/1e9
        print(f"{e:<{w}}{t:>9.1f}{t/len(x)*1e3:>10.1f}{gflops:>9.1f}{gflops/fp32_peak:>13.0%}{naive/t:>9.2f}"
              f"{t/len(x)*10000/60:>14.1f}{nll[e].mean().item():>9.3f}")
    d = (nll['fast_iw_nll bf16'] - nll['fast_iw_nll fp32']).double()
    other = (nll['fast_iw_nll fp32'] - nll["today's iw_nll_dataset"]).double()
    fz = (nll['fast_iw_nll fused'] - nll['fast_iw_nll fp32']).double()
    print(f"fused likelihood against the two-pass one on the same draws: mean {fz.mean():+.5f}, largest |difference| "
          f"{fz.abs().max():.5f} nats per image")
    print(f"\nbf16 against fp32 on the same draws: mean difference {d.mean():+.4f} nats per image (bias), sd {d.std():.4f}, "
          f"largest |difference| {d.abs().max():.4f}; fp32 fast - today's (other draws): {other.mean():+.4f} "
          f"± {other.std()/math.sqrt(len(other)):.4f}")

def protocol(a):
    "Time the standard protocol (or `--images` of it) with each estimator of `--estimators`, on the CPU or a GPU."
    torch.set_num_threads(a.threads)
    device = torch.device(a.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    budget = a.budget_mb or (64 if device.type == 'cpu' else 2048)
    model, x = load_pretrained(REFERENCE, device=device), test_images().to(device)
    if a.images != 'all': x = x[:int(a.images)]
    stored_nll = _meta(REFERENCE)['metrics']
    print(f"{REFERENCE}: K={a.k:,}, {len(x):,} test images, {device}, {torch.get_num_threads()} thread(s), fast estimator's "
          f"budget {budget:g} MB; stored IW-NLL {stored_nll['iw_nll']:.3f} ± {stored_nll['iw_nll_se']:.3f} (measured in "
          f"{stored_nll['iw_seconds']:.0f} s on 2 CPU threads); load {load()}", flush=True)
    for est in a.estimators:
        sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
        sync(); start, cpu = time.perf_counter(), time.process_time()
        g = torch.Generator(device).manual_seed(0)
        if est == 'today': nll = torch.tensor(evaluate_vae(model, x, k=a.k, iw_images=None, ks=(), seed=0)['iw_nll'])
        else: nll = fast_iw_nll(model, x, a.k, a.bs, budget, g, 'bf16' in est, 'fused' in est).double()
        sync(); wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        se = f" ± {nll.std()/math.sqrt(len(nll)):.3f}" if nll.ndim else ''
        name = "evaluate_vae (today's, all of it)" if est == 'today' else f"fast_iw_nll {est[5:] or 'fp32'}"
        print(f"{name}: IW-NLL {nll.mean():.3f}{se} nats per image; {wall:.1f} s wall ({wall/60:.2f} min), {cpu:.0f} s CPU; "
              f"load {load()}", flush=True)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--measure', action='store_true',
                   help='measure the shipped models now instead of reading their stored numbers')
    p.add_argument('--speed', action='store_true', help="time the estimators on a subset of the protocol's images")
    p.add_argument('--protocol', action='store_true', help='time the fast estimator on the whole standard protocol')
    p.add_argument('--k', type=int, default=5000)
    p.add_argument('--images', default=None, help="test images: a number or 'all' (default: all; 200 with --speed)")
    p.add_argument('--repeats', type=int, default=5, help='--speed: timed runs of each estimator, taken in turns')
    p.add_argument('--bs', type=int, default=500, help='fast estimator: images per pass')
    p.add_argument('--budget-mb', type=float, default=None, help="fast estimator: memory for one chunk's logits, in MB "
                   "(default: 64 on the CPU, 2048 on a GPU)")
    p.add_argument('--estimators', nargs='+', default=['fast'],
                   choices=['today', 'fast', 'fast-bf16', 'fast-fused', 'fast-fused-bf16'],
                   help="--protocol: today's evaluate_vae, the fast estimator in fp32, and/or in bf16")
    p.add_argument('--device', default=None, help='--protocol: cpu or cuda (default: cuda when there is one)')
    p.add_argument('--threads', type=int, default=1, help='--protocol: torch threads (default 1)')
    p.add_argument('--run', type=Path, action='append', default=[],
                   help='a run folder of tools/train_binarized.py, with eval.json')
    a = p.parse_args()
    if a.speed:
        a.images = int(a.images or 200)
        speed(a)
    elif a.protocol:
        a.images = a.images or 'all'
        protocol(a)
    else:
        a.images = a.images or 'all'
        stored(a)
