"""Each speed path computes what the plain path computes (issue 7); never timed here."""

import functools
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgan_jax import device_input, input_pipeline, losses, parallel, steps
from cgan_jax import state as state_lib
from cgan_jax.models import acgan, common, dcgan, layers
from configs import default
from tests.conftest import ROOT

# (kernel, stride, in, out, input size): the CGAN's two layers, the 28x28 DCGAN's 5x5 s2
# layers, the 64x64 DCGAN's 4x4 s2 ones (fewer channels), then odd and general cases.
# Cases that repeat a kind already in CI are opt-in (`make test-opt-in`; 5-8 s each).
_opt_in = lambda *case: pytest.param(*case, marks=pytest.mark.opt_in)
CONV_T_CASES = [(4, 2, 32, 16, 7), (4, 2, 16, 1, 14), (5, 2, 12, 8, 7), _opt_in(5, 2, 8, 1, 14),
                (4, 2, 16, 8, 4), _opt_in(4, 2, 8, 4, 8), _opt_in(3, 2, 5, 3, 6), (5, 3, 4, 2, 5),
                (1, 2, 3, 2, 4), _opt_in(2, 2, 3, 2, 3), (6, 3, 2, 3, 4)]


def _sin_sum_grads(apply, params, x):
  return jax.grad(lambda p, x: jnp.sum(jnp.sin(apply(p, x))), argnums=(0, 1))(params, x)


def _assert_trees_close(a, b, rtol=1e-4, atol=1e-4):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


@pytest.mark.parametrize('k,s,cin,cout,hw', CONV_T_CASES)
def test_fast_conv_transpose_is_flax_conv_transpose(k, s, cin, cout, hw):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, hw, hw, cin))
  ref = nn.ConvTranspose(cout, (k, k), strides=(s, s), padding='SAME')
  new = layers.FastConvTranspose(cout, (k, k), strides=(s, s))
  params = ref.init(jax.random.PRNGKey(1), x)
  # Same parameter names, shapes and initial values: checkpoints are interchangeable.
  new_params = new.init(jax.random.PRNGKey(1), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, new_params)
  np.testing.assert_array_equal(new_params['params']['kernel'], params['params']['kernel'])
  np.testing.assert_array_equal(ref.apply(params, x), new.apply(params, x))   # bit-identical
  grads = _sin_sum_grads(new.apply, params, x)
  assert float(jnp.abs(grads[0]['params']['kernel']).max()) > 0
  _assert_trees_close(_sin_sum_grads(ref.apply, params, x), grads)


@pytest.mark.parametrize('k,s,cin,cout,hw', CONV_T_CASES)
def test_conv_transpose_kernel_grad_is_xlas(k, s, cin, cout, hw):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, hw, hw, cin))
  kernel = jax.random.normal(jax.random.PRNGKey(1), (k, k, cin, cout))
  g = jax.random.normal(jax.random.PRNGKey(2), (2, s * hw, s * hw, cout))
  xla = jax.vjp(lambda k: jax.lax.conv_transpose(x, k, (s, s), 'SAME',
                                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC')),
                kernel)[1](g)[0]
  np.testing.assert_allclose(layers.conv_transpose_kernel_grad(x, g, (k, k), (s, s)), xla,
                             rtol=1e-4, atol=1e-4)


def test_fast_conv_transpose_rejects_unsupported_padding():
  with pytest.raises(ValueError, match='SAME'):
    layers.FastConvTranspose(2, (4, 4), (2, 2), padding='VALID').init(
        jax.random.PRNGKey(0), jnp.zeros((1, 3, 3, 1)))


# (kernel, stride, padding, in, out, input size): the 28x28 DCGAN D's layers, the 64x64 D's,
# ACGAN's, then odd sizes and explicit padding.
CONV_CASES = [(5, 2, 'SAME', 11, 8, 28), (5, 2, 'SAME', 8, 12, 14), (7, 1, 'VALID', 12, 1, 7),
              (4, 2, 'SAME', 3, 8, 16), _opt_in(3, 1, 'SAME', 8, 4, 14),
              _opt_in(3, 2, 'SAME', 2, 4, 7), (3, 2, ((0, 1), (2, 0)), 3, 2, 9)]


def _conv_grads_first_and_second_order(conv, params, x):
  """d/d(params, x) of sum sin(conv) and of a gradient-penalty-like sum sin(d/dx sum sin(conv))."""
  def penalty(p, x):
    dx = jax.grad(lambda x: jnp.sum(jnp.sin(conv.apply(p, x))))(x)
    return jnp.sum(jnp.sin(3.0 * dx))
  return (_sin_sum_grads(conv.apply, params, x),
          jax.grad(penalty, argnums=(0, 1))(params, x))


@pytest.mark.parametrize('kernel_grad', ['taps', 'xla'])
@pytest.mark.parametrize('k,s,padding,cin,cout,hw', CONV_CASES)
def test_fast_conv_is_flax_conv_to_second_order(k, s, padding, cin, cout, hw, kernel_grad):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, hw, hw, cin))
  ref = nn.Conv(cout, (k, k), strides=(s, s), padding=padding)
  new = layers.FastConv(cout, (k, k), strides=(s, s), padding=padding, kernel_grad=kernel_grad)
  params = ref.init(jax.random.PRNGKey(1), x)
  new_params = new.init(jax.random.PRNGKey(1), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, new_params)
  np.testing.assert_array_equal(new_params['params']['kernel'], params['params']['kernel'])
  np.testing.assert_array_equal(ref.apply(params, x), new.apply(params, x))   # bit-identical
  (first, second) = _conv_grads_first_and_second_order(new, params, x)
  assert float(jnp.abs(second[0]['params']['kernel']).max()) > 0
  ref_first, ref_second = _conv_grads_first_and_second_order(ref, params, x)
  _assert_trees_close(ref_first, first)
  _assert_trees_close(ref_second, second)
  if kernel_grad == 'xla':  # first derivatives are XLA's own, to the bit
    for u, v in zip(jax.tree.leaves(ref_first), jax.tree.leaves(first)):
      np.testing.assert_array_equal(u, v)


def test_conv_kernel_grad_can_tell_a_wrong_stride():
  """The tap-wise kernel gradient is not vacuously 'close': the wrong stride gives another."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
  g = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 2))
  xla = jax.vjp(lambda k: jax.lax.conv_general_dilated(
      x, k, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')),
      jnp.zeros((3, 3, 3, 2)))[1](g)[0]
  np.testing.assert_allclose(layers.conv_kernel_grad(x, g, (3, 3), (2, 2), 'SAME'), xla,
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(layers.conv_kernel_grad(x[:, :4, :4], g, (3, 3), (1, 1), 'SAME'), xla,
                         rtol=1e-3, atol=1e-3)


def _plain_dcgan(monkeypatch):
  """Swap the fast layers of models/dcgan.py and models/acgan.py for the Flax modules."""
  monkeypatch.setattr(dcgan, '_FastConvT', functools.partial(
      nn.ConvTranspose, kernel_init=common.init_02, padding='SAME'))
  monkeypatch.setattr(dcgan, '_FastConvD', functools.partial(nn.Conv, kernel_init=common.init_02))
  monkeypatch.setattr(acgan.layers, 'FastConv', nn.Conv)


MODELS = {
    'g28': (lambda: dcgan.Generator28(conditional=True), 'z', False),
    'g64': (lambda: dcgan.Generator64(), 'z', False),
    'd28_bn': (lambda: dcgan.Discriminator28(conditional=True), 'x28', False),
    'd28_ln_gp': (lambda: dcgan.Discriminator28(conditional=True, norm='layer'), 'x28', True),
    'acgan_g': (lambda: acgan.Generator(), 'z', False),
}


@pytest.mark.parametrize('name', sorted(MODELS))
def test_models_compute_what_the_flax_layers_compute(name, monkeypatch):
  """Same parameter tree, bit-identical outputs, gradients to fp rounding; for the WGAN-GP
  critic, also the gradient of the gradient penalty (second order)."""
  build, kind, penalty = MODELS[name]
  batch = 4
  y = jnp.arange(batch) % 10
  x = (jax.random.normal(jax.random.PRNGKey(0), (batch, 100)) if kind == 'z' else
       jnp.tanh(jax.random.normal(jax.random.PRNGKey(0), (batch, 28, 28, 1))))
  fast = build()
  variables = fast.init(jax.random.PRNGKey(1), x, y, False)
  out = lambda m, v: m.apply(v, x, y, True, mutable=['batch_stats'])[0]
  fast_out = out(fast, variables)

  def loss(model, params, rest):
    def f(p):
      v = {'params': p, **rest}
      if kind == 'z':
        return jnp.sum(jnp.sin(3.0 * out(model, v)))
      critic = lambda xx: model.apply(v, xx, y, True, mutable=['batch_stats'])[0].logits
      value = jnp.sum(critic(x))
      if penalty:
        value += losses.gradient_penalty(critic, x, x[::-1], jnp.linspace(0.1, 0.9, batch))
      return value
    return jax.grad(f)(params)
  rest = {k: v for k, v in variables.items() if k != 'params'}
  fast_grads = loss(fast, variables['params'], rest)

  _plain_dcgan(monkeypatch)
  plain = build()
  plain_variables = plain.init(jax.random.PRNGKey(1), x, y, False)
  # Checkpoints are interchangeable: same names, shapes and initial values.
  assert jax.tree.map(jnp.shape, plain_variables) == jax.tree.map(jnp.shape, variables)
  for u, v in zip(jax.tree.leaves(plain_variables), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(u, v)
  for u, v in zip(jax.tree.leaves(out(plain, variables)), jax.tree.leaves(fast_out)):
    np.testing.assert_array_equal(u, v)
  plain_grads = loss(plain, variables['params'], rest)
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(plain_grads))
  assert scale > 0
  _assert_trees_close(plain_grads, fast_grads, rtol=1e-4, atol=1e-5 * scale)


def _sgd_config():
  config = default.get_config()
  config.g_optimizer = dict(name='sgd', learning_rate=0.01)  # params move by lr * grad:
  config.d_optimizer = dict(name='sgd', learning_rate=0.01)  # directly comparable
  config.batch_size = 16
  return config


def _fresh_state(config, mesh):
  gan = state_lib.build_gan(config, 10, steps.AXIS)
  state = state_lib.init_state(gan, jax.random.PRNGKey(config.seed), (28, 28, 1))
  return jax.device_put(state, parallel.replicated(mesh))


def _host_path(config, mesh, images, labels, epoch, num_steps):
  step = parallel.data_parallel(steps.train_step, mesh)
  state, metrics = _fresh_state(config, mesh), []
  for _, batch in zip(range(num_steps), input_pipeline.batches(
      images, labels, global_batch=config.batch_size, seed=config.seed, epoch=epoch,
      pipeline='numpy')):
    state, m = step(state, parallel.global_batch(batch, mesh))
    metrics.append(m)
  return jax.device_get(state), jax.device_get(metrics)


def _device_path(config, mesh, feed, epoch, chunks):
  feed.start_epoch(epoch)
  state, metrics = _fresh_state(config, mesh), []
  for k in chunks:
    state, m = feed.run(state, k)
    m = jax.device_get(m)
    metrics += [{name: v[i] for name, v in m.items()} for i in range(k)]
  return jax.device_get(state), metrics


@pytest.mark.parametrize('num_devices,chunks', [
    (1, (3, 2)),
    pytest.param(4, (3, 2), marks=pytest.mark.slow),      # ~20 s each on a quiet machine
    pytest.param(4, (1,) * 5, marks=[pytest.mark.slow, pytest.mark.opt_in])])
def test_device_input_trains_the_same_model(num_devices, chunks, fashion_dir):
  """Device-resident split (fused steps, or one per dispatch) == host numpy pipeline."""
  config = _sgd_config()
  images, labels = input_pipeline.load_split('fashion_mnist', 'train', fashion_dir)
  images, labels = images[:160], labels[:160]  # 10 steps of 16 per epoch
  mesh = parallel.make_mesh(num_devices)
  host, host_metrics = _host_path(config, mesh, images, labels, epoch=1, num_steps=5)
  feed = device_input.DeviceFeed(steps.train_step, images, labels, mesh,
                                 global_batch=config.batch_size, seed=config.seed,
                                 steps_per_dispatch=max(chunks))
  assert [feed.chunk(limit) for limit in (1, 100)] == [1, max(chunks)]
  dev, dev_metrics = _device_path(config, mesh, feed, epoch=1, chunks=chunks)
  assert int(host.step) == int(dev.step) == 5
  for a, b in zip(jax.tree.leaves((host.g_params, host.d_params, host.g_stats, host.d_stats)),
                  jax.tree.leaves((dev.g_params, dev.d_params, dev.g_stats, dev.d_stats))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # 5 SGD steps of rounding; updates are ~1e-3
  for h, d in zip(host_metrics, dev_metrics, strict=True):
    for name in h:
      np.testing.assert_allclose(h[name], d[name], rtol=1e-4, atol=1e-6, err_msg=name)
  # The comparison can fail: another epoch's permutation trains a different model.
  other, _ = _device_path(config, mesh, feed, epoch=2, chunks=chunks)
  assert not np.allclose(other.d_params['Dense_1']['kernel'], dev.d_params['Dense_1']['kernel'],
                         rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('micro_steps', [1, 2])
def test_epoch_order_is_the_host_pipelines(micro_steps):
  images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
  order = device_input.epoch_order(seed=3, epoch=2, n=50, global_batch=8,
                                   micro_steps=micro_steps)
  host = [b['image'][..., 0, 0, 0] for b in input_pipeline.batches(
      images, np.zeros(50, np.int32), global_batch=8, seed=3, epoch=2,
      micro_steps=micro_steps, pipeline='numpy')]
  assert order.shape == (50 // (8 * micro_steps), micro_steps, 8)
  np.testing.assert_array_equal(order, np.stack(host))


@pytest.mark.slow
def test_device_pipeline_trains_without_tensorflow_and_checkpoints_on_time(tmp_path, fashion_dir):
  """'device' pipeline in the trainer, TF blocked: chunks stop at checkpoint and epoch steps."""
  script = f'''
import sys
sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None
from absl import logging
logging.set_verbosity('info')
from cgan_jax import trainer
from configs import cgan_fashion_mnist
c = cgan_fashion_mnist.get_config()
c.num_train_examples, c.num_epochs, c.pipeline, c.allow_download = 256, 2, 'device', False
c.steps_per_dispatch, c.checkpoint_every_steps, c.log_every_steps = 3, 3, 5
c.keep_checkpoints = 10
state = trainer.train_and_evaluate(c, {str(tmp_path / 'w')!r})
assert int(state.step) == 8
print('OK')
'''
  out = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0 and 'OK' in out.stdout, out.stderr[-3000:]
  ckpts = sorted(int(s) for s in os.listdir(tmp_path / 'w' / 'checkpoints') if s.isdigit())
  assert ckpts == [3, 4, 6, 8]  # every 3 steps and at each epoch end (4 steps per epoch)
  assert (tmp_path / 'w' / 'samples' / 'epoch_0002.png').exists()
  assert 'step 5/8' in out.stderr  # the log cadence holds across chunks
