"""One epoch over the MNIST training set: vae_course's on-device `TensorBatches` against PyTorch's standard
`DataLoader` over a `TensorDataset` (per-item indexing and collation), side by side in one run.

Usage: python benchmarks/bench_data.py [--root DIR] [--bs 128] [--repeats 5]
Prints seconds per epoch for each loader (best of `repeats`), and their ratio.
"""
import argparse, time
import torch
from torch.utils.data import DataLoader, TensorDataset
from vae_course.data import load_dataset, to_float, get_dls

def epoch_seconds(loader, repeats):
    "Best time of `repeats` full passes over `loader`, touching every batch."
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        n = sum(len(xb) for xb, _ in loader)
        best = min(best, time.perf_counter() - start)
    return best, n

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--root', default=None, help='data folder (default: the usual search, see load_dataset)')
    p.add_argument('--bs', type=int, default=128)
    p.add_argument('--repeats', type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    dls = get_dls('mnist', bs=a.bs, root=a.root)
    x = to_float(load_dataset('mnist', root=a.root).images)
    reference = DataLoader(TensorDataset(x, x), batch_size=a.bs, shuffle=True)
    print(f"data: {dls.source}; device: {dls.device}; batch size {a.bs}; torch threads {torch.get_num_threads()}")
    ours, n1 = epoch_seconds(dls.train, a.repeats)
    ref, n2 = epoch_seconds(reference, a.repeats)
    assert n1 == n2 == len(x), (n1, n2, len(x))
    print(f"{'loader':<42}{'s/epoch':>10}{'images/s':>14}")
    print(f"{'vae_course TensorBatches (on device)':<42}{ours:>10.3f}{n1/ours:>14,.0f}")
    print(f"{'torch DataLoader(TensorDataset)':<42}{ref:>10.3f}{n2/ref:>14,.0f}")
    print(f"ratio TensorBatches / DataLoader: {ours/ref:.3f}  (speed-up x{ref/ours:.1f})")
