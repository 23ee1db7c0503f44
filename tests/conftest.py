"""Test setup: 4 simulated CPU devices (before JAX starts), quiet TF, shared helpers."""

import os
import subprocess
import sys

os.environ.setdefault('JAX_NUM_CPU_DEVICES', '4')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ['CGAN_JAX_OFFLINE'] = '1'  # no test, nor any script it runs, may download data

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_DIR = '/usr/share/datasets/fashion-mnist'
# A tiny but real budget: the first 256 Fashion-MNIST images, 4 steps of 64 per epoch.
TINY = ['--config.num_train_examples=256', '--config.log_every_steps=2',
        '--config.allow_download=false']


def run_script(script: str, *args: str, timeout: float = 600, env: dict | None = None
               ) -> subprocess.CompletedProcess:
  """Runs one of the entry points as a user would, from the repository root."""
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, **(env or {})})


@pytest.fixture(scope='session')
def fashion_dir() -> str:
  if not os.path.exists(os.path.join(FASHION_DIR, 'train-images-idx3-ubyte.gz')):
    pytest.fail(f'real Fashion-MNIST is missing from {FASHION_DIR}: '
                'apt-get install -y dataset-fashion-mnist')
  return FASHION_DIR


@pytest.fixture(scope='session')
def jax_env(tmp_path_factory) -> dict[str, str]:
  """A persistent XLA compilation cache: later subprocesses skip ~10 s of compiling each."""
  return {'JAX_COMPILATION_CACHE_DIR': str(tmp_path_factory.getbasetemp() / 'jax_cache'),
          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
          'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}
