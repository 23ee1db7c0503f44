"""Each speed path computes what the plain path computes (issue 7); never timed here."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgan_jax import device_input, input_pipeline, parallel, steps
from cgan_jax import state as state_lib
from cgan_jax.models import layers
from configs import default
from tests.conftest import ROOT

# (kernel, stride, in, out, input size): the CGAN's two layers, then odd and general cases.
CONV_T_CASES = [(4, 2, 32, 16, 7), (4, 2, 16, 1, 14), (3, 2, 5, 3, 6), (5, 3, 4, 2, 5),
                (1, 2, 3, 2, 4)]


@pytest.mark.parametrize('k,s,cin,cout,hw', CONV_T_CASES)
def test_subpixel_conv_transpose_is_flax_conv_transpose(k, s, cin, cout, hw):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, hw, hw, cin))
  ref = nn.ConvTranspose(cout, (k, k), strides=(s, s), padding='SAME')
  new = layers.SubPixelConvTranspose(cout, (k, k), strides=(s, s))
  params = ref.init(jax.random.PRNGKey(1), x)
  # Same parameter names, shapes and initial values: checkpoints are interchangeable.
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape,
                                                         new.init(jax.random.PRNGKey(1), x))
  np.testing.assert_array_equal(new.init(jax.random.PRNGKey(1), x)['params']['kernel'],
                                params['params']['kernel'])
  np.testing.assert_array_equal(ref.apply(params, x), new.apply(params, x))
  # The sub-pixel form alone (which gives the kernel gradient) is the same function too.
  np.testing.assert_allclose(
      layers.subpixel_conv_transpose(x, params['params']['kernel'], (s, s)),
      ref.apply(params, x) - params['params']['bias'], rtol=1e-5, atol=1e-5)

  def grads(module):
    return jax.grad(lambda p, x: jnp.sum(jnp.sin(module.apply(p, x))), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(grads(ref)), jax.tree.leaves(grads(new))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_subpixel_rejects_unsupported_padding():
  with pytest.raises(ValueError, match='SAME'):
    layers.SubPixelConvTranspose(2, (4, 4), (2, 2), padding='VALID').init(
        jax.random.PRNGKey(0), jnp.zeros((1, 3, 3, 1)))


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
    pytest.param(4, (1,) * 5, marks=pytest.mark.slow)])
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
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
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
