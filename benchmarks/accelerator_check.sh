#!/usr/bin/env bash
# The accelerator check (issue 31): stages under one time budget, results rewritten as they
# come, at most four flat files in OUT_DIR. Everything it does is in accelerator_check.py.
#
#   make gpu-bundle                                   # here, once: .whl/ and data/fashion-mnist/
#   bash benchmarks/accelerator_check.sh OUT_DIR      # there: BUDGET_S=480, STAGES=..., QUICK=1
#
# The GPU host has jax/flax/optax/orbax/torch but no ml_collections or clu: they come as
# carried pure-Python wheels, installed to /tmp/site (nothing is fetched).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ -d .whl ] && ! $PY -c 'import ml_collections, clu' 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "error: installing the carried wheels failed" >&2; exit 2; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
exec $PY benchmarks/accelerator_check.py "$@"
