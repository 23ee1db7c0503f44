"""The GAN train step: one discriminator update, then one generator update.

This is the file to fork. Everything here is a pure function of (state, batch): no I/O,
no globals, no flags. It runs per device under `jax.shard_map` over the ('data',) mesh
axis (see parallel.py). Each loss is `pmean`-ed over the axis inside the differentiated
function, so it is the global-batch loss; parameters are replicated (device-invariant),
and shard_map's autodiff sums their cotangents over devices, so `grad` is already the
global-batch gradient, identical on every device (an extra pmean of grads would be a
no-op). BatchNorm averages its batch statistics over the same axis. N devices thus
compute what one device computes on the whole global batch.
"""

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cgan_jax.state import GAN, GANState

AXIS = 'data'
Batch = dict[str, jax.Array]  # {'image': uint8 (B, H, W, C), 'label': int32 (B,)}
Metrics = dict[str, jax.Array]


def to_pixel_range(image_BHWC: jax.Array, gan: GAN) -> jax.Array:
  """uint8 [0, 255] -> float32 in G's output range."""
  lo, hi = gan.pixel_range
  return lo + (hi - lo) * image_BHWC.astype(jnp.float32) / 255.0


def sample_latents(gan: GAN, key: jax.Array, batch_size: int) -> jax.Array:
  """z for this device's examples, one key per *global* example index.

  Keying noise by global index (not by device) makes the step independent of how the
  global batch is split across devices.
  """
  first = lax.axis_index(AXIS) * batch_size
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(first + jnp.arange(batch_size))
  return jax.vmap(lambda k: gan.latent(k, gan.z_dim))(keys)


def _run(net, params, stats, *args, rng: jax.Array) -> tuple[jax.Array, Any]:
  """Applies a net in training mode; returns (output, updated BatchNorm statistics)."""
  dropout_rng = jax.random.fold_in(rng, lax.axis_index(AXIS))  # distinct masks per device
  out, new_vars = net.apply({'params': params, 'batch_stats': stats}, *args, train=True,
                            mutable=['batch_stats'], rngs={'dropout': dropout_rng})
  return out, new_vars.get('batch_stats', stats)


def d_step(state: GANState, x_BHWC: jax.Array, y_B: jax.Array, z_BZ: jax.Array,
           rng: jax.Array) -> tuple[GANState, Metrics]:
  """One discriminator update on real x and G(z, y); G's parameters are untouched."""
  gan = state.gan
  g_rng, d_rng = jax.random.split(rng)
  fake_BHWC, _ = _run(gan.generator, state.g_params, state.g_stats, z_BZ, y_B, rng=g_rng)
  fake_BHWC = lax.stop_gradient(fake_BHWC)

  def loss_fn(d_params):
    real_logits, stats = _run(gan.discriminator, d_params, state.d_stats, x_BHWC, y_B,
                              rng=d_rng)
    fake_logits, stats = _run(gan.discriminator, d_params, stats, fake_BHWC, y_B, rng=d_rng)
    loss = lax.pmean(gan.loss.d(real_logits, fake_logits), AXIS)
    return loss, (stats, real_logits, fake_logits)

  (loss, (stats, real_logits, fake_logits)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.d_params)
  updates, d_opt = gan.d_tx.update(grads, state.d_opt, state.d_params)
  metrics = {'d_loss': loss,
             'D(x)': lax.pmean(jnp.mean(jax.nn.sigmoid(real_logits)), AXIS),
             'D(G(z))': lax.pmean(jnp.mean(jax.nn.sigmoid(fake_logits)), AXIS)}
  new_state = state.replace(d_params=jax.tree.map(jnp.add, state.d_params, updates),
                            d_stats=stats, d_opt=d_opt)
  return new_state, metrics


def g_step(state: GANState, y_B: jax.Array, z_BZ: jax.Array,
           rng: jax.Array) -> tuple[GANState, Metrics]:
  """One generator update through the current D; D's parameters and statistics are untouched."""
  gan = state.gan
  g_rng, d_rng = jax.random.split(rng)

  def loss_fn(g_params):
    fake_BHWC, stats = _run(gan.generator, g_params, state.g_stats, z_BZ, y_B, rng=g_rng)
    fake_logits, _ = _run(gan.discriminator, state.d_params, state.d_stats, fake_BHWC, y_B,
                          rng=d_rng)
    return lax.pmean(gan.loss.g(fake_logits), AXIS), stats

  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_params)
  updates, g_opt = gan.g_tx.update(grads, state.g_opt, state.g_params)
  new_state = state.replace(g_params=jax.tree.map(jnp.add, state.g_params, updates),
                            g_stats=stats, g_opt=g_opt)
  return new_state, {'g_loss': loss}


def train_step(state: GANState, batch: Batch) -> tuple[GANState, Metrics]:
  """D update then G update on one (per-device) batch; same z for both, as in the recipe."""
  x_BHWC = to_pixel_range(batch['image'], state.gan)
  y_B = batch['label']
  key = jax.random.fold_in(state.rng, state.step)
  z_key, d_key, g_key = jax.random.split(key, 3)
  z_BZ = sample_latents(state.gan, z_key, y_B.shape[0])
  state, d_metrics = d_step(state, x_BHWC, y_B, z_BZ, d_key)
  state, g_metrics = g_step(state, y_B, z_BZ, g_key)
  return state.replace(step=state.step + 1), {**d_metrics, **g_metrics}
