"""Issue 12's step changes compute what the step computed before them; never timed here.

- backend-aware kernel gradients: the non-CPU rule (XLA's own) forced on CPU gives the tap-wise
  rule's gradients, and a step lowered for CUDA or TPU contains no tap-wise dot;
- one G forward per step: the step equals the old composition (G run again for its update)
  on 1 and 4 devices, and XLA counts fewer FLOPs;
- one device: no all-reduce in the compiled step, same results as the shard_map path.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export
from jax.sharding import PartitionSpec as P

from cgan_jax import models, parallel, steps
from cgan_jax import state as state_lib
from cgan_jax.models import layers
from configs import default

# A tap-wise kernel gradient: a dot of two (B, H, W, C) maps contracting B, H and W (under
# the 1-device vmap they carry one more, batch, dimension).
TAP_DOT = re.compile(r'dot_general[^\n]*contracting_dims = \[\d+, \d+, \d+\] x')


class _ConvNet(nn.Module):
  """Both fast layers, their rule chosen by `mode`."""
  mode: str = 'auto'

  @nn.compact
  def __call__(self, x):
    h = nn.relu(layers.FastConv(8, (3, 3), strides=(2, 2), kernel_grad=self.mode)(x))
    h = layers.FastConvTranspose(4, (4, 4), strides=(2, 2), kernel_grad=self.mode)(h)
    return layers.FastConv(1, (5, 5), kernel_grad=self.mode)(h)


def _net_grads(mode, x):
  net = _ConvNet(mode)
  params = net.init(jax.random.PRNGKey(1), x)
  return params, jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.sin(net.apply(p, x))),
                                  argnums=(0, 1)))


def test_forced_non_cpu_rule_gives_the_cpu_rules_gradients():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 12, 12, 2))
  params, auto = _net_grads('auto', x)
  _, taps = _net_grads('taps', x)
  _, xla = _net_grads('xla', x)
  ga, gt, gx = auto(params, x), taps(params, x), xla(params, x)
  on_cpu = jax.devices()[0].platform == 'cpu'
  for a, t in zip(jax.tree.leaves(ga), jax.tree.leaves(gt if on_cpu else gx)):
    np.testing.assert_array_equal(a, t)  # 'auto' is 'taps' on CPU, 'xla' elsewhere
  for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gx)):
    assert float(jnp.abs(b).max()) > 0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # Same parameter tree in every mode: checkpoints move between backends.
  assert (jax.tree.map(jnp.shape, _ConvNet('xla').init(jax.random.PRNGKey(1), x)) ==
          jax.tree.map(jnp.shape, params))


def test_bad_kernel_grad_mode_is_refused():
  with pytest.raises(ValueError, match='kernel_grad must be one of'):
    _ConvNet('fast').init(jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 1)))


def _mlir(fn, platform, *args) -> str:
  return export.export(fn, platforms=[platform])(*args).mlir_module()


def test_conv_net_lowered_for_gpu_and_tpu_has_no_tap_dots():
  x = jnp.ones((2, 8, 8, 1))
  params, grads = _net_grads('auto', x)
  assert len(TAP_DOT.findall(_mlir(grads, 'cpu', params, x))) == 9 + 16 + 25
  for platform in ('cuda', 'rocm', 'tpu'):
    text = _mlir(grads, platform, params, x)
    assert 'dot_general' not in text, platform
    assert text.count('convolution') >= 3 * 3 - 1, platform  # forwards and XLA's gradients


def _config(model='infogan_cgan', sgd=False, **overrides):
  c = default.get_config()
  c.model = models.from_legacy_name(model)
  c.update(overrides)
  if sgd:  # parameters move by lr * grad: directly comparable between runs
    c.g_optimizer, c.d_optimizer = dict(SGD), dict(SGD)
  return c


def _setup(config, num_devices):
  if len(jax.devices()) < num_devices:  # on one GPU (the accelerator check)
    pytest.skip(f'needs {num_devices} devices')
  mesh = parallel.make_mesh(num_devices)
  gan = state_lib.build_gan(config, 10, parallel.batch_norm_axis(mesh))  # as the trainer does
  state = state_lib.init_state(gan, jax.random.PRNGKey(config.seed), (28, 28, 1))
  return mesh, jax.device_put(state, parallel.replicated(mesh))


def _batch(seed, micro=1, n=32):
  rs = np.random.RandomState(seed)
  return {'image': rs.randint(0, 256, (micro, n, 28, 28, 1)).astype(np.uint8),
          'label': rs.randint(0, 10, (micro, n)).astype(np.int32)}


def test_seed_step_lowered_for_gpu_has_no_tap_dots():
  """The whole seed-000 train step (infoGAN conv G with FastConvTranspose)."""
  mesh, state = _setup(_config(), 1)
  step = parallel.data_parallel(steps.train_step, mesh, donate=False)
  batch = parallel.global_batch(_batch(0), mesh)
  assert TAP_DOT.search(_mlir(step, 'cpu', state, batch))
  assert not TAP_DOT.search(_mlir(step, 'cuda', state, batch))


def reference_step(state, batch):
  """The step before issue 12: each G update runs G again (same keys as train_step)."""
  gan = state.gan
  key = jax.random.fold_in(state.rng, state.step)
  z_key, d_key, g_key = jax.random.split(key, 3)
  d_metrics = []
  for i in range(gan.d_steps):
    y_B = batch['label'][i]
    z_BZ = steps.sample_latents(gan, jax.random.fold_in(z_key, i), y_B.shape[0])
    d_rng = jax.random.fold_in(d_key, i)
    fake, _ = steps.generate(state, z_BZ, y_B, steps.fakes_rng(d_rng))
    state, m = steps.d_step(state, steps.to_pixel_range(batch['image'][i], gan), y_B, fake,
                            d_rng)
    d_metrics.append(m)
  for j in range(gan.g_steps):
    state, g_metrics = steps.g_step(state, y_B, z_BZ, jax.random.fold_in(g_key, j))
  metrics = {**jax.tree.map(lambda *m: jnp.mean(jnp.stack(m), 0), *d_metrics), **g_metrics}
  return state.replace(step=state.step + 1), metrics


def _train(config, num_devices, step_fn, batches):
  mesh, state = _setup(config, num_devices)
  fn = parallel.data_parallel(step_fn, mesh)
  for b in batches:
    state, metrics = fn(state, parallel.global_batch(b, mesh))
  return jax.device_get(state), jax.device_get(metrics)


def _assert_close(a, b, rtol=1e-4, atol=1e-5):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


SGD = dict(name='sgd', learning_rate=0.01)

# (model, overrides): the seed-000 CGAN, G twice per step, 3 critic updates, ACGAN's dropout D.
ONE_FORWARD_CASES = [
    ('infogan_cgan', {}),
    ('mlp_cgan_concat', dict(g_steps=2)),
    ('mlp_gan', dict(n_critic=3, loss='wasserstein', clip_critic=0.01)),
    ('acgan', {}),
]


# ACGAN on 4 devices is opt-in (`make test-opt-in`, ~30 s): its dropout D on one device and the
# other models on four are in CI.
@pytest.mark.parametrize('num_devices,model,overrides', [
    pytest.param(n, m, o, marks=pytest.mark.opt_in) if (n, m) == (4, 'acgan') else (n, m, o)
    for n in (1, 4) for m, o in ONE_FORWARD_CASES])
def test_one_g_forward_step_is_the_old_step(model, overrides, num_devices):
  config = _config(model, sgd=True, **overrides)
  micro = config.n_critic
  batches = [_batch(i, micro) for i in range(2)]
  new, m_new = _train(config, num_devices, steps.train_step, batches)
  old, m_old = _train(config, num_devices, reference_step, batches)
  assert int(new.step) == 2
  _assert_close(m_new, m_old)
  _assert_close((new.g_params, new.d_params, new.g_stats, new.d_stats),
                (old.g_params, old.d_params, old.g_stats, old.d_stats))


def _compiled(step_fn, config):
  mesh, state = _setup(config, 1)
  batch = parallel.global_batch(_batch(0), mesh)
  return parallel.data_parallel(step_fn, mesh, donate=False).lower(state, batch).compile()


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost)['flops']


def test_one_g_forward_step_counts_fewer_flops():
  config = _config()
  new, old = _flops(_compiled(steps.train_step, config)), _flops(_compiled(reference_step, config))
  # One G forward of the infoGAN G at batch 32 is about 0.7 GFLOP of a ~10 GFLOP step.
  assert new < old - 0.3e9, (new, old)


def test_one_device_step_has_no_all_reduce_and_equals_the_collective_path():
  """1 device: no collective compiled; 4 devices (shard_map's typed autodiff, pmeans,
  BatchNorm over AXIS): all-reduces, and the same training for the same global batches."""
  config = _config(sgd=True)
  assert 'all-reduce' not in _compiled(steps.train_step, config).as_text()
  mesh4, state4 = _setup(config, 4)
  step4 = parallel.data_parallel(steps.train_step, mesh4, donate=False)
  assert 'all-reduce' in step4.lower(
      state4, parallel.global_batch(_batch(0), mesh4)).compile().as_text()  # can fail
  batches = [_batch(i) for i in range(2)]
  one, m1 = _train(config, 1, steps.train_step, batches)
  four, m4 = _train(config, 4, steps.train_step, batches)
  _assert_close(m1, m4, rtol=2e-4)
  _assert_close((one.g_params, one.d_params, one.g_stats, one.d_stats),
                (four.g_params, four.d_params, four.g_stats, four.d_stats), atol=1e-6)


def test_feed_choice_by_backend():
  from cgan_jax import device_input
  assert device_input.feed_choice('auto', 0, 'cpu', 937) == ('numpy', 1)
  assert device_input.feed_choice('auto', 0, 'gpu', 937) == ('device', 937)
  assert device_input.feed_choice('auto', 0, 'tpu', 937) == ('device', 937)
  assert device_input.feed_choice('tf.data', 0, 'gpu', 937) == ('tf.data', 937)
  assert device_input.feed_choice('device', 25, 'cpu', 937) == ('device', 25)  # as asked


def test_bfloat16_step_computes_in_bf16_and_keeps_fp32_state():
  config = _config(dtype='bfloat16')
  mesh, state = _setup(config, 1)
  step = parallel.data_parallel(steps.train_step, mesh, donate=False)
  batch = parallel.global_batch(_batch(0), mesh)
  text = step.lower(state, batch).as_text()
  assert re.search(r'stablehlo.convolution[^\n]*bf16', text)  # conv operands in bf16
  new, metrics = step(state, batch)
  for leaf in jax.tree.leaves((new.g_params, new.d_params, new.g_opt, new.d_opt,
                               new.g_stats, new.d_stats, metrics)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
