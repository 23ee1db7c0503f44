"""What InceptionV3 features cost: images/s of evaluation/inception.py, extrapolated to 10,000.

  python benchmarks/inception_benchmark.py --images=200 --batch_sizes=16,50
  python benchmarks/inception_benchmark.py --inception_weights=pt_inception-2015-12-05-6726825d.pth

Times `inception.apply` (8-bit rounding, 28x28 gray -> 299x299 RGB, the 2048-d pool features
and the IS probabilities) jitted, on Fashion-MNIST-sized inputs, after one warm-up call per
batch size; the compile time is reported apart. Without weights it uses random ones (the
cost is the same). With --torch and pytorch-fid importable, the same images through
pytorch-fid's InceptionV3 (PyTorch, this process's threads) for comparison.
"""

import json
import os
import platform
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_IMAGES = flags.DEFINE_integer('images', 200, 'Images timed per batch size.')
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['16', '50'], 'Batch sizes to time.')
_WEIGHTS = flags.DEFINE_string('inception_weights', None, 'pytorch-fid .pth (default: random).')
_TORCH = flags.DEFINE_bool('torch', False, 'Also time pytorch-fid (random weights).')
_JSON = flags.DEFINE_string('json', None, 'Also write the results here.')


def _variables():
  import jax
  import jax.numpy as jnp
  from cgan_jax.evaluation import inception
  if _WEIGHTS.value:
    return inception.load(_WEIGHTS.value).variables
  x = jnp.zeros((1, inception.SIZE, inception.SIZE, 3))
  return jax.jit(inception.InceptionV3().init)(jax.random.PRNGKey(0), x)


def time_jax(batch: int, n: int) -> dict:
  """Seconds per image of the jitted features at one batch size."""
  import jax
  import numpy as np
  from cgan_jax.evaluation import inception
  variables = _variables()
  fn = jax.jit(inception.apply)
  x = np.random.default_rng(0).random((batch, 28, 28, 1), np.float32)
  start = time.perf_counter()
  jax.block_until_ready(fn(variables, x))
  compile_s = time.perf_counter() - start
  calls = max(1, n // batch)
  start = time.perf_counter()
  for _ in range(calls):
    jax.block_until_ready(fn(variables, x))
  per_image = (time.perf_counter() - start) / (calls * batch)
  return {'framework': 'jax', 'batch': batch, 'images': calls * batch,
          'first_call_s': round(compile_s, 1), 's_per_image': per_image}


def time_torch(batch: int, n: int) -> dict:
  """The same through pytorch-fid's own network (random weights, no download)."""
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  'tests'))
  import test_inception  # the torchvision shim and the random state dict
  torch, pfi = test_inception.pytorch_fid_inception()
  state = test_inception.random_state_dict()
  pfi.load_state_dict_from_url = lambda *a, **k: state
  net = pfi.InceptionV3([3]).eval()
  x = torch.rand(batch, 3, 28, 28)
  with torch.no_grad():
    net(x)
    calls = max(1, n // batch)
    start = time.perf_counter()
    for _ in range(calls):
      net(x)
  per_image = (time.perf_counter() - start) / (calls * batch)
  return {'framework': f'torch {torch.__version__} ({torch.get_num_threads()} threads)',
          'batch': batch, 'images': calls * batch, 'first_call_s': None,
          's_per_image': per_image}


def main(argv):
  del argv
  import jax
  rows = []
  for batch in map(int, _BATCH_SIZES.value):
    rows.append(time_jax(batch, _IMAGES.value))
    if _TORCH.value:
      rows.append(time_torch(batch, _IMAGES.value))
  load = os.getloadavg() if hasattr(os, 'getloadavg') else None
  meta = {'date': time.strftime('%Y-%m-%d %H:%M'), 'machine': platform.processor() or
          platform.machine(), 'cpus': os.cpu_count(), 'load_before_after': load,
          'jax': jax.__version__, 'backend': jax.default_backend(),
          'device': str(jax.devices()[0])}
  print(json.dumps(meta))
  print('| framework | batch | images timed | first call (s) | ms/image | min per 10,000 |')
  print('|---|---:|---:|---:|---:|---:|')
  for r in rows:
    first = '-' if r['first_call_s'] is None else r['first_call_s']
    print(f"| {r['framework']} | {r['batch']} | {r['images']} | {first} | "
          f"{1e3 * r['s_per_image']:.0f} | {r['s_per_image'] * 1e4 / 60:.1f} |")
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump({'meta': meta, 'rows': rows}, f, indent=2)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  app.run(main)
