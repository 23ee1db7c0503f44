"""The pure train step: which parameters each half touches, determinism, 1 vs 4 devices."""

import os

import jax
import numpy as np
import pytest

from cgan_jax import parallel, steps
from cgan_jax import state as state_lib
from configs import default


def _config(**overrides):
  c = default.get_config()
  c.update(overrides)
  return c


def _batch(seed=0, n=64, micro=1):
  """One step's input: `micro` minibatches of n (one per critic update)."""
  rs = np.random.RandomState(seed)
  return {'image': rs.randint(0, 256, (micro, n, 28, 28, 1)).astype(np.uint8),
          'label': rs.randint(0, 10, (micro, n)).astype(np.int32)}


def _setup(config, num_devices):
  mesh = parallel.make_mesh(num_devices)
  gan = state_lib.build_gan(config, 10, steps.AXIS)
  state = state_lib.init_state(gan, jax.random.PRNGKey(config.seed), (28, 28, 1))
  return mesh, jax.device_put(state, parallel.replicated(mesh))


def _run(config, num_devices, batches, step_fn=steps.train_step):
  mesh, state = _setup(config, num_devices)
  fn = parallel.data_parallel(step_fn, mesh)
  metrics = []
  for b in batches:
    state, m = fn(state, parallel.global_batch(b, mesh))
    metrics.append(m)
  return jax.device_get(state), jax.device_get(metrics)


def _same(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _d_only(state, batch):
  x = steps.to_pixel_range(batch['image'][0], state.gan)
  z = steps.sample_latents(state.gan, state.rng, x.shape[0])
  fake, _ = steps.generate(state, z, batch['label'][0], state.rng)
  return steps.d_step(state, x, batch['label'][0], fake, state.rng)


def _g_only(state, batch):
  z = steps.sample_latents(state.gan, state.rng, batch['label'].shape[1])
  return steps.g_step(state, batch['label'][0], z, state.rng)


def _d_loss_grad_into_g(state, batch):
  """The gradient of D's update loss with respect to G's parameters, through the fakes."""
  x = steps.to_pixel_range(batch['image'][0], state.gan)
  z = steps.sample_latents(state.gan, state.rng, x.shape[0])

  def d_loss(g_params):
    s = state.replace(g_params=g_params)
    fake, _ = steps.generate(s, z, batch['label'][0], state.rng)
    return steps.d_step(s, x, batch['label'][0], fake, state.rng)[1]['d_loss']
  return state, {'grad': jax.grad(d_loss)(state.g_params)}


def test_d_step_changes_d_and_sends_no_gradient_into_g():
  _, before = _setup(_config(), 1)
  before = jax.device_get(before)
  after, _ = _run(_config(), 1, [_batch()], _d_only)
  assert not _same(before.d_params, after.d_params)
  assert not _same(before.d_stats, after.d_stats)
  # The fakes are constants of D's loss (stop_gradient): nothing flows back into G.
  _, (m,) = _run(_config(), 1, [_batch()], _d_loss_grad_into_g)
  assert all(not np.any(g) for g in jax.tree.leaves(m['grad']))


def test_g_step_changes_g_through_d():
  _, before = _setup(_config(), 1)
  before = jax.device_get(before)
  after, _ = _run(_config(), 1, [_batch()], _g_only)
  # G's loss reaches G's parameters through D (a detached D would leave Adam's update at 0).
  assert not _same(before.g_params, after.g_params)
  assert not _same(before.g_stats, after.g_stats)


def test_train_step_is_deterministic_and_seeded():
  batches = [_batch(0), _batch(1)]
  a, ma = _run(_config(), 1, batches)
  b, mb = _run(_config(), 1, batches)
  assert _same(a, b) and _same(ma, mb)
  assert int(a.step) == 2
  c, _ = _run(_config(seed=1), 1, batches)
  assert not _same(a.g_params, c.g_params)


def test_noise_differs_per_step_and_example():
  _, state = _setup(_config(), 1)
  mesh = parallel.make_mesh(1)
  fn = jax.jit(jax.shard_map(lambda k: steps.sample_latents(state.gan, k, 8), mesh=mesh,
                             in_specs=jax.sharding.PartitionSpec(),
                             out_specs=jax.sharding.PartitionSpec(steps.AXIS)))
  z0 = np.asarray(fn(jax.random.fold_in(state.rng, 0)))
  z1 = np.asarray(fn(jax.random.fold_in(state.rng, 1)))
  assert len({tuple(r) for r in z0.round(6)}) == 8
  assert not np.allclose(z0, z1)


@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_one_and_four_devices_agree(optimizer):
  """Same global batches -> same training on 1 and 4 devices (to fp tolerance)."""
  if len(jax.devices()) < 4:  # one GPU (the accelerator check), or JAX_NUM_CPU_DEVICES=1
    assert (jax.devices()[0].platform != 'cpu' or
            int(os.environ.get('JAX_NUM_CPU_DEVICES', '0')) < 4), 'asked for 4 CPU devices'
    pytest.skip('needs 4 devices')
  opt = (dict(name='sgd', learning_rate=0.01) if optimizer == 'sgd' else
         dict(name='adam', learning_rate=1e-3, b1=0.5, b2=0.999))
  config = _config()
  config.g_optimizer, config.d_optimizer = dict(opt), dict(opt)
  batches = [_batch(i) for i in range(3)]
  one, m1 = _run(config, 1, batches)
  four, m4 = _run(config, 4, batches)
  for k in m1[-1]:
    np.testing.assert_allclose(m1[-1][k], m4[-1][k], rtol=2e-4, atol=1e-5, err_msg=k)
  if optimizer == 'sgd':  # parameters move by lr * grad: directly comparable
    for a, b in zip(jax.tree.leaves((one.g_params, one.d_params)),
                    jax.tree.leaves((four.g_params, four.d_params))):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # BatchNorm running statistics are global-batch statistics on both.
    for a, b in zip(jax.tree.leaves((one.g_stats, one.d_stats)),
                    jax.tree.leaves((four.g_stats, four.d_stats))):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  else:  # Adam turns fp noise in ~0 grads (biases before BN) into lr-sized steps:
    # compare what the networks compute instead of those irrelevant parameters.
    gan = state_lib.build_gan(config, 10, None)
    z = np.random.RandomState(0).uniform(-1, 1, (20, 62)).astype(np.float32)
    y = np.arange(20) % 10
    x1 = state_lib.generate(gan, one.g_params, one.g_stats, z, y)
    x4 = state_lib.generate(gan, four.g_params, four.g_stats, z, y)
    np.testing.assert_allclose(x1, x4, atol=2e-3)
