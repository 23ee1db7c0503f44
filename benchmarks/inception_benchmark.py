"""What InceptionV3 features cost: images/s of evaluation/inception.py, extrapolated to 10,000.

  python benchmarks/inception_benchmark.py --images=200 --batch_sizes=16,50
  python benchmarks/inception_benchmark.py --inception_weights=pt_inception-2015-12-05-6726825d.pth
  python benchmarks/inception_benchmark.py --pytorch_fid --images=64 --batch_sizes=16

Times `inception.apply` (8-bit rounding, 28x28 gray -> 299x299 RGB, the 2048-d pool features
and the IS probabilities) jitted, on Fashion-MNIST-sized inputs, after one warm-up call per
batch size; the compile time is reported apart. Without weights it uses random ones (the
cost is the same). With --torch and pytorch-fid importable, the same images through
pytorch-fid's InceptionV3 (PyTorch, this process's threads) for comparison.

With --pytorch_fid: the side by side on the real weights (--inception_weights, else as eval.py
finds them): pytorch-fid's own extractor, its InceptionV3 with those weights mapped into its
state dict (a TF-named TorchScript archive renamed by inception_tf; no class layer: zeros), vs
the Flax network with pytorch-fid's preprocessing and with the file's own protocol, on the same
real Fashion-MNIST test images, in interleaved repeats (the order alternating); medians, and the
features' agreement with pytorch-fid's.
"""

import json
import os
import platform
import subprocess
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_IMAGES = flags.DEFINE_integer('images', 200, 'Images timed per batch size.')
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['16', '50'], 'Batch sizes to time.')
_WEIGHTS = flags.DEFINE_string('inception_weights', None, 'pytorch-fid .pth (default: random).')
_TORCH = flags.DEFINE_bool('torch', False, 'Also time pytorch-fid (random weights).')
_JSON = flags.DEFINE_string('json', None, 'Also write the results here.')
_PYTORCH_FID = flags.DEFINE_bool('pytorch_fid', False, 'Side by side with pytorch-fid on the '
                                 'real weights (see the module docstring).')
_REPEATS = flags.DEFINE_integer('repeats', 3, '--pytorch_fid: interleaved repeats.')
FASHION_DIR = '/usr/share/datasets/fashion-mnist'


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


def torch_state_dict(path: str) -> dict:
  """The weights file as pytorch-fid's state dict (numpy): a .pth as it is, a TF-named
  TorchScript archive renamed (inception_tf, as inception.load does before converting)."""
  from cgan_jax.evaluation import inception, inception_tf, pth
  contents = pth.read(path)
  if not contents.torchscript:
    return dict(contents.tensors)
  return inception_tf.to_state_dict(contents, inception._torch_names(inception._template()),
                                    inception._geometry(), path)


def _pytorch_fid(path: str):
  """(torch, pytorch-fid's InceptionV3 (pool features) with the weights at `path`)."""
  import numpy as np
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  'tests'))
  import test_inception  # the torchvision shim
  torch, pfi = test_inception.pytorch_fid_inception()
  state = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in torch_state_dict(path).items()}
  state.setdefault('fc.weight', torch.zeros(1008, 2048))  # unused by the pool features
  state.setdefault('fc.bias', torch.zeros(1008))
  pfi.load_state_dict_from_url = lambda *a, **k: state  # nothing downloaded
  return torch, pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()


def _pool_features(protocol: str):
  import jax
  from cgan_jax.evaluation import inception
  return jax.jit(lambda v, x: inception.apply(v, x, protocol)[0])


def side_by_side(n: int, batch: int, repeats: int) -> tuple[list[dict], dict]:
  """pytorch-fid vs Flax on the same n real images, interleaved; (rows, agreement)."""
  import functools
  import jax
  import numpy as np
  from cgan_jax import input_pipeline
  from cgan_jax.evaluation import inception
  weights = inception.load(_WEIGHTS.value)
  torch, net = _pytorch_fid(weights.path)
  images = input_pipeline.load_split('fashion_mnist', 'test', FASHION_DIR)[0][:n]
  x = images.astype(np.float32) / 255.0  # (n, 28, 28, 1), 8-bit values
  x_torch = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).repeat(1, 3, 1, 1)
  batches = range(0, n - n % batch or n, batch)
  def torch_run():
    with torch.no_grad():
      return np.concatenate([net(x_torch[i:i + batch])[0][:, :, 0, 0].numpy() for i in batches])
  def flax_run(fn):
    return np.concatenate([np.asarray(fn(weights.variables, x[i:i + batch])) for i in batches])
  contenders = {f'pytorch-fid {torch.__version__} ({torch.get_num_threads()} threads)': torch_run}
  for protocol in (inception.PYTORCH_FID, weights.protocol):
    fn = _pool_features(protocol)
    start = time.perf_counter()
    jax.block_until_ready(fn(weights.variables, x[:batch]))
    compile_s = time.perf_counter() - start
    contenders[f'flax, {protocol} protocol (first call {compile_s:.1f} s)'] = (
        functools.partial(flax_run, fn))
  torch_run()  # warm-up
  times, out = {k: [] for k in contenders}, {}
  for r in range(repeats):
    for name in (list(contenders) if r % 2 == 0 else list(contenders)[::-1]):
      start = time.perf_counter()
      out[name] = contenders[name]()
      times[name].append(time.perf_counter() - start)
  images_timed = len(batches) * batch
  rows = [{'framework': name, 'batch': batch, 'images': images_timed, 'first_call_s': None,
           's_per_image': float(np.median(t)) / images_timed,
           'repeats_s': [round(v, 2) for v in t]} for name, t in times.items()]
  ref, same = out[list(contenders)[0]], out[list(contenders)[1]]
  agreement = {'max_rel_diff_vs_pytorch_fid': float(np.abs(same - ref).max() / np.abs(ref).max()),
               'weights': os.path.basename(weights.path), 'sha256': weights.sha256}
  return rows, agreement


def _cpu_model() -> str:
  try:
    out = subprocess.run(['lscpu'], capture_output=True, text=True, timeout=30).stdout
    return next(l.split(':', 1)[1].strip() for l in out.splitlines() if 'Model name' in l)
  except (OSError, StopIteration, subprocess.SubprocessError):
    return platform.processor() or platform.machine()


def main(argv):
  del argv
  import jax
  load_before = os.getloadavg()
  rows, agreement = [], None
  if _PYTORCH_FID.value:
    rows, agreement = side_by_side(_IMAGES.value, int(_BATCH_SIZES.value[0]), _REPEATS.value)
  for batch in map(int, _BATCH_SIZES.value if not _PYTORCH_FID.value else []):
    rows.append(time_jax(batch, _IMAGES.value))
    if _TORCH.value:
      rows.append(time_torch(batch, _IMAGES.value))
  meta = {'date': time.strftime('%Y-%m-%d %H:%M'), 'cpu': _cpu_model(),
          'cpus': os.cpu_count(), 'load_before_after': [load_before[0], os.getloadavg()[0]],
          'command': ' '.join(sys.argv), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'jax': jax.__version__,
          'backend': jax.default_backend(), 'device': str(jax.devices()[0])}
  if agreement:
    meta['agreement'] = agreement
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
  from cgan_jax import cli
  cli.fast_cpu_features()  # as eval.py (CGAN_JAX_CPU_DOT_FUSION=0: XLA's default path)
  app.run(main)
