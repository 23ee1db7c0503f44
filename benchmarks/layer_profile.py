"""Per-layer CPU profile of the DCGAN-family convolutions: forward, input gradient, kernel gradient.

  python benchmarks/layer_profile.py [--models=g28,d28,g64,d64,acgan,infogan] [--reps=5] [--paths=plain,fast]

Each conv layer of the named models is timed in isolation at its training shape (batch 64):
three separately jitted functions (y = f(x, k); dx = vjp_x(g); dk = vjp_k(g)), each the median
of `--reps` calls after a warm-up, `block_until_ready`. With `--paths=plain,fast` the plain
lax/Flax formulation and the fast path used by the models (cgan_jax/models/layers.py) are timed
interleaved, call by call, so both see the same machine load. The 1-minute load average is
printed beside every row (the dev machine is shared; see docs/perf_notes.md).
"""

import functools
import os
import statistics
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
from jax import lax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cgan_jax.models import layers  # noqa: E402

_MODELS = flags.DEFINE_list('models', ['g28', 'd28', 'acgan'], 'g28, d28, g64, d64, acgan, infogan.')
_REPS = flags.DEFINE_integer('reps', 5, 'Timed calls per function (median reported).')
_PATHS = flags.DEFINE_list('paths', ['plain', 'fast'], 'plain: lax as Flax calls it; fast: '
                           'layers.conv with tap-wise kernel gradient / layers.conv_transpose '
                           '(SAME, stride > 1; plain otherwise).')
_BATCH = flags.DEFINE_integer('batch', 64, 'Batch size.')
_DIMS = ('NHWC', 'HWIO', 'NHWC')


def conv_t_plain(x, k, s, padding):
  return lax.conv_transpose(x, k, (s, s), padding, dimension_numbers=_DIMS)


def conv_plain(x, k, s, padding):
  return lax.conv_general_dilated(x, k, (s, s), padding, dimension_numbers=_DIMS)


def conv_t_fast(x, k, s, padding):
  if padding == 'SAME' and s > 1:
    return layers.conv_transpose(x, k, (s, s), 'taps')
  return conv_t_plain(x, k, s, padding)


def conv_fast(x, k, s, padding):
  return layers.conv(x, k, (s, s), padding, 'taps')


# name: (kind, kernel, stride, padding, cin, cout, input H=W)
LAYERS = {
    'g28': [('convT', 7, 1, 'VALID', 110, 256, 1), ('convT', 5, 2, 'SAME', 256, 128, 7),
            ('convT', 5, 2, 'SAME', 128, 1, 14)],
    'd28': [('conv', 5, 2, 'SAME', 11, 128, 28), ('conv', 5, 2, 'SAME', 128, 256, 14),
            ('conv', 7, 1, 'VALID', 256, 1, 7)],
    'g64': [('convT', 4, 1, 'VALID', 100, 1024, 1), ('convT', 4, 2, 'SAME', 1024, 512, 4),
            ('convT', 4, 2, 'SAME', 512, 256, 8), ('convT', 4, 2, 'SAME', 256, 128, 16),
            ('convT', 4, 2, 'SAME', 128, 1, 32)],
    'd64': [('conv', 4, 2, 'SAME', 1, 128, 64), ('conv', 4, 2, 'SAME', 128, 256, 32),
            ('conv', 4, 2, 'SAME', 256, 512, 16), ('conv', 4, 2, 'SAME', 512, 1024, 8),
            ('conv', 4, 1, 'VALID', 1024, 1, 4)],
    'infogan': [('convT', 4, 2, 'SAME', 128, 64, 7), ('convT', 4, 2, 'SAME', 64, 1, 14),
                ('conv', 4, 2, 'SAME', 11, 64, 28), ('conv', 4, 2, 'SAME', 64, 128, 14)],
    'acgan': [('conv', 3, 1, 'SAME', 128, 128, 14), ('conv', 3, 1, 'SAME', 128, 64, 28),
              ('conv', 3, 1, 'SAME', 64, 1, 28), ('conv', 3, 2, 'SAME', 1, 16, 28),
              ('conv', 3, 2, 'SAME', 16, 32, 14), ('conv', 3, 2, 'SAME', 32, 64, 8),
              ('conv', 3, 1, 'SAME', 64, 128, 4)],
}


def load() -> str:
  return f'{os.getloadavg()[0]:.2f}'


def _functions(f):
  fwd = jax.jit(f)
  dx = jax.jit(lambda x, k, g: jax.vjp(lambda x: f(x, k), x)[1](g)[0])
  dk = jax.jit(lambda x, k, g: jax.vjp(lambda k: f(x, k), k)[1](g)[0])
  return {'fwd': lambda x, k, g: fwd(x, k), 'dx': dx, 'dk': dk}


def profile(spec, paths, reps, batch):
  kind, ksz, s, padding, cin, cout, hw = spec
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(keys[0], (batch, hw, hw, cin))
  k = 0.02 * jax.random.normal(keys[1], (ksz, ksz, cin, cout))
  impls = {'plain': conv_t_plain if kind == 'convT' else conv_plain,
           'fast': conv_t_fast if kind == 'convT' else conv_fast}
  fns = {p: _functions(functools.partial(lambda f, x, k: f(x, k, s, padding), impls[p]))
         for p in paths}
  y = fns[paths[0]]['fwd'](x, k, None)
  g = jax.random.normal(keys[2], y.shape)
  times = {(p, part): [] for p in paths for part in ('fwd', 'dx', 'dk')}
  for p in paths:                                  # warm-up: compile
    for part, fn in fns[p].items():
      jax.block_until_ready(fn(x, k, g))
  for _ in range(reps):                            # interleaved, call by call
    for part in ('fwd', 'dx', 'dk'):
      for p in paths:
        t = time.perf_counter()
        jax.block_until_ready(fns[p][part](x, k, g))
        times[(p, part)].append(1e3 * (time.perf_counter() - t))
  return {key: statistics.median(v) for key, v in times.items()}


def main(_):
  paths = _PATHS.value
  print(f'batch {_BATCH.value}; ms, median of {_REPS.value}; paths {paths}')
  for model in _MODELS.value:
    for spec in LAYERS[model]:
      kind, ksz, s, padding, cin, cout, hw = spec
      r = profile(spec, paths, _REPS.value, _BATCH.value)
      cols = '  '.join(f'{part} ' + '/'.join(f'{r[(p, part)]:8.1f}' for p in paths)
                       for part in ('fwd', 'dx', 'dk'))
      print(f'{model:5s} {kind:5s} {ksz}x{ksz} s{s} {padding:5s} {cin:4d}->{cout:4d} @{hw:2d}  '
            f'{cols}  load {load()}', flush=True)


if __name__ == '__main__':
  app.run(main)
