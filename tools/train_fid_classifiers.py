#!/usr/bin/env python3
"""Retrain the FID feature classifiers that ship in `vae_course/weights/` (lesson 09).

Usage (from the repository root, with the full MNIST and Fashion-MNIST at hand, e.g. VAE_COURSE_DATA=...):
    python tools/train_fid_classifiers.py                      # writes vae_course/weights/{mnist,fashion_mnist}_classifier.pt
    python tools/train_fid_classifiers.py --out /tmp/w --subset 2000 --epochs 1   # a quick try, elsewhere

The recipe is lesson 09's own `train_classifier` (run from the notebook, so there is one copy of it), with the
settings the shipped files were made with: 3 epochs for MNIST, 4 for Fashion-MNIST, seed 42. The lesson never
writes these files: a lesson that saved into the installed package would change every FID computed after it.
After retraining, re-run lesson 09 top to bottom (its tables show the stored accuracies) and commit both.
"""
import argparse, json, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = {'mnist': 3, 'fashion_mnist': 4}

def lesson_train_classifier():
    "The `train_classifier` function defined in nbs/09_fid.ipynb, with the imports its cells use."
    ns = {}
    exec('from vae_course.all import *\nfrom vae_course.fid import *\nfrom torch import nn\n'
         'from fastai.learner import Learner\nfrom fastai.metrics import accuracy\n'
         'from fastai.callback.schedule import fit_one_cycle', ns)
    cells = json.loads((ROOT/'nbs'/'09_fid.ipynb').read_text())['cells']
    src, = [''.join(c['source']) for c in cells
            if c['cell_type'] == 'code' and ''.join(c['source']).startswith('def train_classifier(')]
    exec(src, ns)
    return ns['train_classifier']

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', type=Path, default=ROOT/'vae_course'/'weights',
                   help='folder to write (default: the checkout\'s vae_course/weights)')
    p.add_argument('--datasets', nargs='+', default=list(EPOCHS), choices=list(EPOCHS))
    p.add_argument('--epochs', type=int, default=None,
                   help='override the epochs of every dataset (default: 3 for MNIST, 4 for Fashion-MNIST)')
    p.add_argument('--subset', type=int, default=None,
                   help='train on this many images only (a quick check; do not ship the result)')
    args = p.parse_args(argv)
    from vae_course.fid import save_classifier
    train_classifier = lesson_train_classifier()
    for name in args.datasets:
        n_epochs = args.epochs or EPOCHS[name]
        start = time.perf_counter()
        learn, acc = train_classifier(name, n_epochs, subset=args.subset)
        trained_on = ('the 60,000 training images; accuracy on the 10,000 test images' if args.subset is None
                      else f'a subset of {args.subset:,} training images (not for shipping)')
        path = save_classifier(learn.model, args.out/f'{name}_classifier.pt', dataset=name, epochs=n_epochs,
                               test_accuracy=round(acc, 4), trained_on=trained_on)
        print(f"{name}: test accuracy {acc:.4f} after {n_epochs} epochs ({time.perf_counter() - start:.0f} s); "
              f"{path}: {path.stat().st_size/1024:.0f} KiB")

if __name__ == '__main__': main()
