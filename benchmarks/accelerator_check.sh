#!/usr/bin/env bash
# The accelerator check (issue 12): one script, about 8 minutes on one H100/H200, using only
# what such a machine has (jax with CUDA, flax, optax, orbax, absl, torch with CUDA, pytest; no
# TensorFlow, TFDS, clu or ml_collections).
#
#   make gpu-bundle                       # here, once: wheels in .whl/, Fashion-MNIST in data/
#   bash benchmarks/accelerator_check.sh OUT_DIR     # there (carry .whl and data)
#
# It runs, in order, each step's log under OUT_DIR:
#   1. the fast tests that touch the step, on the GPU (fp32 matmuls at 'highest' precision,
#      so the equivalence tolerances mean what they mean on CPU);
#   2. the benchmark table: seed-000 CGAN and MLP CGAN, host vs device feed at 1 / 100 /
#      a whole epoch of steps per dispatch, fp32 and bf16, batch 64 / 256 / 1024, the PyTorch
#      peer eager and torch.compile'd in the same process (JSON + Markdown);
#   3. the 40-epoch seed-000 GAN and CGAN through benchmarks/results.py (train, score with
#      eval.py's evaluator at epochs 1 / 20 / 40, grids, table) — the results of issue 13;
#   4. eval.py on the CGAN run.
# A failing step is recorded and the next one still runs; the summary is printed last.
set -uo pipefail
OUT=${1:-${OUT:-/tmp/accelerator_check}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 CGAN_JAX_OFFLINE=1
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
PY=${PYTHON:-python3}
if [ -d .whl ] && ! $PY -c 'import ml_collections' 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
DATA=${DATA_DIR:-data/fashion-mnist}
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || DATA=/usr/share/datasets/fashion-mnist
SUMMARY="$OUT/summary.md"
: >"$SUMMARY"

step() {  # step NAME TIMEOUT_S COMMAND...: runs it, logs it, records status and wall time
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name: $*" | tee -a "$OUT/$name.log"
  timeout "$limit" "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  echo "| $name | rc $rc | $((SECONDS - t0)) s |" | tee -a "$SUMMARY"
  tail -n 25 "$OUT/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $PY -c 'import jax, flax, optax; print("jax", jax.__version__, jax.devices(), "flax",
flax.__version__, "optax", optax.__version__)'
  $PY -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())' || true
  date -u; } >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

step tests 150 env JAX_DEFAULT_MATMUL_PRECISION=highest $PY -m pytest -q -x -p no:cacheprovider \
  tests/test_accelerator_paths.py tests/test_steps.py tests/test_losses.py -m 'not slow'

# QUICK=1: a dry run of the whole script on any machine (CPU too): tiny budgets.
if [ -n "${QUICK:-}" ]; then
  STEPS=(2 2) PIPES=numpy,device:1,device:2 BATCHES=64 TORCH=eager
  RESULTS=(--epochs=2 --override=num_train_examples=256 --num_samples=300 --kid_subsets=2)
else
  STEPS=(100 200) PIPES=numpy,device:1,device:100,device:epoch BATCHES=64,256,1024
  TORCH=eager,compile RESULTS=()
fi
BENCH="benchmarks/train_benchmark.py --config.data_dir=$DATA --config.allow_download=false"
step bench_cgan 200 $PY $BENCH --config=configs/cgan_fashion_mnist.py --steps=${STEPS[0]} \
  --repeats=3 --pipelines=$PIPES --dtypes=float32,bfloat16 --batch_sizes=$BATCHES \
  --torch=$TORCH --peak_gflops=${PEAK_GFLOPS:-67000} --json="$OUT/bench_cgan.json"
step bench_mlp 90 $PY $BENCH --config=configs/cgan_mlp_concat.py --steps=${STEPS[1]} \
  --repeats=3 --pipelines=${PIPES/device:100,/} --dtypes=float32,bfloat16 \
  --batch_sizes=${BATCHES/,256/} --torch=$TORCH --json="$OUT/bench_mlp.json"

step results 240 $PY benchmarks/results.py --recipes=gan,cgan --runs_dir="$OUT/runs" \
  --out_dir="$OUT/results" --override=data_dir=$DATA --override=allow_download=false \
  "${RESULTS[@]}"
CGAN_RUN=$(ls -d "$OUT"/runs/cgan* 2>/dev/null | head -n 1)
step eval 60 $PY eval.py --workdir="$CGAN_RUN" --data_dir="$DATA" --format=markdown \
  ${QUICK:+--num_samples=300 --kid_subsets=2}

echo; echo "## Summary ($(date -u))"; cat "$SUMMARY"
