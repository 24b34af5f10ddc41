#!/usr/bin/env python3
"""Convert the shipped models from pickled .pt files to safetensors with a model card, and measure both formats.

Usage: python tools/ship_safetensors.py [--repeat 20]

For every shipped model that still has a .pt file: its float16 state dict is written unchanged as .safetensors (the
tensors are compared after the round trip), its card .md is generated from its record, the index is updated and the .pt
removed (`vae_course.explorer.ship`). Before that, it prints each file's size and the median time to load it
(`torch.load(weights_only=True)` against `safetensors.torch.load_file`) over `--repeat` loads, side by side.
"""
import argparse, statistics, time
import torch
from safetensors.torch import load_file
from vae_course.explorer import _index, _meta, pretrained_dir, ship

def median_seconds(fn, repeat:int)->float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return statistics.median(times)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--repeat', type=int, default=20, help='loads per file for the median time (default: %(default)s)')
    args = p.parse_args(argv)
    folder = pretrained_dir()
    print(f"{'model':<32}{'.pt kB':>9}{'.safetensors kB':>17}{'.pt load ms':>13}{'safetensors ms':>16}{'ratio':>7}")
    for name in sorted(_index()):
        pt = folder/f'{name}.pt'
        if not pt.is_file(): continue
        state = torch.load(pt, weights_only=True, map_location='cpu')
        t_pt = median_seconds(lambda pt=pt: torch.load(pt, weights_only=True, map_location='cpu'), args.repeat)
        size_pt = pt.stat().st_size
        new = ship(state, _meta(name), name, folder)
        back = load_file(new)
        assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state), name
        t_st = median_seconds(lambda new=new: load_file(new), args.repeat)
        print(f"{name:<32}{size_pt/1e3:>9.1f}{new.stat().st_size/1e3:>17.1f}{t_pt*1e3:>13.2f}{t_st*1e3:>16.2f}"
              f"{t_st/t_pt:>7.2f}")

if __name__ == '__main__': main()
