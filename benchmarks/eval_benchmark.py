"""Seconds for one 10,000-sample evaluation (all metrics) on this machine, stage by stage.

  python benchmarks/eval_benchmark.py --workdir=runs/cgan     # a trained run
  python benchmarks/eval_benchmark.py                         # a freshly initialised CGAN

The real-data features are computed once per dataset and cached; both the cold (first) and
the warm cost are shown. Classifier training is not part of an evaluation (its asset is committed).
"""

import os
import sys
import tempfile
import time
from contextlib import contextmanager

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_WORKDIR = flags.DEFINE_string('workdir', None, 'A train.py workdir (default: an untrained CGAN).')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 10000, 'Generated samples.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Real-feature cache (default: a fresh '
                                 'temporary directory, so the cold cost is measured too).')


@contextmanager
def timed(name: str, log: dict[str, float]):
  start = time.perf_counter()
  yield
  log[name] = time.perf_counter() - start
  print(f'{name:<34s} {log[name]:7.2f} s', flush=True)


def main(argv):
  del argv
  import jax
  from cgan_jax import sampling
  from cgan_jax import state as state_lib
  from cgan_jax.evaluation import evaluator, metrics
  from configs import cgan_fashion_mnist

  cache_dir = _CACHE_DIR.value or tempfile.mkdtemp(prefix='cgan_jax_bench_')
  options = evaluator.Options(num_samples=_NUM_SAMPLES.value, cache_dir=cache_dir)
  print(f'{jax.devices()[0].device_kind}, {os.cpu_count()} CPUs; {options.num_samples} samples, '
        f'KID {options.kid_subsets} x {options.kid_subset_size}, k = {options.k}')
  cold, t = {}, {}
  with timed('classifier asset (load + checksum)', t):
    ev = evaluator.DatasetEvaluator('fashion_mnist', options)
  with timed('real features, cold (train + test)', cold):
    ev.real_split('train'), ev.real_split('test')
  with timed('real features, from the cache', t):
    train, _ = ev.train, ev.test
  if _WORKDIR.value:
    with timed('checkpoint (sampling.load)', t):
      gan, state = sampling.load(_WORKDIR.value)
  else:
    with timed('untrained CGAN (jitted init)', t):
      gan = state_lib.build_gan(cgan_fashion_mnist.get_config(), 10, axis_name=None)
      state = jax.jit(state_lib.init_state, static_argnums=(0, 2))(gan, jax.random.PRNGKey(0),
                                                                    (28, 28, 1))
      jax.block_until_ready(state)
  with timed('generate + features (incl. jit)', t):
    feats, probs, labels = ev.sample(gan, state.g_params, state.g_stats)
  with timed('FID', t):
    metrics.frechet_distance(*metrics.mean_cov(feats), train.mean, train.cov)
  with timed('KID', t):
    metrics.kid(feats, train.features, options.kid_subsets, options.kid_subset_size)
  with timed('IS', t):
    metrics.inception_score(probs)
  with timed('precision/recall: real k-NN radii', t):
    real, radii = ev.pr_reference
  with timed('precision/recall', t):
    metrics.precision_recall(real, feats, options.k, radii)
  with timed('intra-FID + conditional accuracy', t):
    metrics.intra_fid(feats, labels, train.class_means, train.class_covs)
    metrics.conditional_accuracy(probs, labels)
  total = sum(t.values())
  print(f'{"total, warm cache":<34s} {total:7.2f} s   (goal <= 30 s)')
  print(f'{"total, first run of a dataset":<34s} {total + cold[next(iter(cold))]:7.2f} s')


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  app.run(main)
