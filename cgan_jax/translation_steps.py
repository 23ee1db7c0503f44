"""Image-to-image GANs: pix2pix and CycleGAN train steps, their state and the replay buffer.

The same contract as steps.py (the file to fork for noise-to-image GANs): `train_step(state,
batch) -> (state, metrics)` is pure, runs per device under `jax.shard_map` over the ('data',)
axis, `pmean`s every loss inside the differentiated function (so gradients are global-batch
gradients) and takes all randomness from state.rng folded with the step. A batch is
{'image': uint8 (1, B, S, S, 2C) = [A ‖ B] (translation_data.py), 'label': (1, B)}.

pix2pix (paired A -> B), per step: one D update, then one G update through the new D:
  L_D = ½·[ℓ(D(a, b), real) + ℓ(D(a, G(a)), fake)]            (ℓ: the config's loss pair)
  L_G = ℓ_G(D(a, G(a))) + λ_L1·E|G(a) − b|
CycleGAN (unpaired A <-> B; G: A -> B, F: B -> A), per step: one update of both generators,
then one of both discriminators on fakes drawn from the replay buffers:
  L_G = ℓ_G(D_B(G(a))) + ℓ_G(D_A(F(b))) + λ_cyc·(E|F(G(a)) − a| + E|G(F(b)) − b|)
        + λ_id·(E|G(b) − b| + E|F(a) − a|)
  L_D = ℓ_D(D_A(a), D_A(pool_A(F(b)))) + ℓ_D(D_B(b), D_B(pool_B(G(a))))
  (the least-squares pair already halves D's loss, as the paper does).
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax import lax

from cgan_jax import losses
from cgan_jax.steps import AXIS, apply_train

PyTree = Any
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
PIXEL_RANGE = (-1.0, 1.0)  # both generators end in tanh


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Translator:
  """Everything static about an image-to-image GAN."""
  generator: nn.Module        # G(x_BHWC, train) -> y_BHWC
  discriminator: nn.Module    # D(x_BHWC, train) -> patch logits (B, P, P)
  loss: losses.LossPair
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  channels: int               # C of one side; batches hold 2C
  image_size: int
  l1_weight: float = 0.0      # pix2pix λ_L1
  cycle_weight: float = 0.0   # CycleGAN λ_cyc
  identity_weight: float = 0.0  # CycleGAN λ_id
  pool_size: int = 0          # CycleGAN replay buffer per domain (0: none)
  pool_mix: float = 0.5       # once full: P(return a stored fake instead of the new one)


@flax.struct.dataclass
class TranslationState:
  """All arrays that change during training; `spec` rides along as static data.

  pix2pix: g_* and d_* are one net's; CycleGAN: {'ab': G, 'ba': F} and {'a': D_A, 'b': D_B},
  each pair under one optimizer, and `pool` holds the replay buffers.
  """
  step: jax.Array
  rng: jax.Array
  g_params: PyTree
  g_stats: PyTree
  g_opt: PyTree
  d_params: PyTree
  d_stats: PyTree
  d_opt: PyTree
  pool: PyTree  # {'a': (P, S, S, C), 'a_count': (), 'b': ..., 'b_count': ()} or {}
  spec: Translator = flax.struct.field(pytree_node=False)


def _fresh(spec: Translator, rng: jax.Array, g_vars: PyTree, d_vars: PyTree, pool: PyTree,
           part: Callable[[PyTree, str], PyTree]) -> TranslationState:
  """Step 0 from the nets' variables; part(vars, collection) picks one collection out."""
  g_params, g_stats = part(g_vars, 'params'), part(g_vars, 'batch_stats')
  d_params, d_stats = part(d_vars, 'params'), part(d_vars, 'batch_stats')
  return TranslationState(
      step=jnp.zeros((), jnp.int32), rng=rng, g_params=g_params, g_stats=g_stats,
      g_opt=spec.g_tx.init(g_params), d_params=d_params, d_stats=d_stats,
      d_opt=spec.d_tx.init(d_params), pool=pool, spec=spec)


def init_pix2pix(spec: Translator, rng: jax.Array) -> TranslationState:
  """One G and one D (on [A ‖ B]), initialised in inference mode."""
  keys = jax.random.split(rng, 5)
  side, c = spec.image_size, spec.channels
  x = jnp.zeros((1, side, side, c), jnp.float32)
  g_vars = spec.generator.init(keys[0], x, train=False)
  d_vars = spec.discriminator.init(keys[1], jnp.concatenate([x, x], -1), train=False)
  return _fresh(spec, keys[2], g_vars, d_vars, {}, lambda v, col: v.get(col, {}))


def init_cyclegan(spec: Translator, rng: jax.Array) -> TranslationState:
  """G and F as {'ab', 'ba'}, D_A and D_B as {'a', 'b'} (inference-mode init), and empty
  replay buffers (none when pool_size is 0)."""
  keys = jax.random.split(rng, 5)
  side, c = spec.image_size, spec.channels
  x = jnp.zeros((1, side, side, c), jnp.float32)
  g_vars = {name: spec.generator.init(k, x, train=False) for name, k in zip(('ab', 'ba'), keys)}
  d_vars = {name: spec.discriminator.init(k, x, train=False)
            for name, k in zip(('a', 'b'), keys[2:])}
  pool = {}
  if spec.pool_size:
    empty = lambda: jnp.zeros((spec.pool_size, side, side, c), jnp.float32)  # distinct buffers
    pool = {'a': empty(), 'a_count': jnp.zeros((), jnp.int32),
            'b': empty(), 'b_count': jnp.zeros((), jnp.int32)}
  part = lambda tree, col: {name: v.get(col, {}) for name, v in tree.items()}
  return _fresh(spec, keys[4], g_vars, d_vars, pool, part)


def translate(spec: Translator, g_params: PyTree, g_stats: PyTree,
              x_BHWC: jax.Array) -> jax.Array:
  """One generator in inference mode (running statistics, no dropout), images in [-1, 1]."""
  return spec.generator.apply({'params': g_params, 'batch_stats': g_stats}, x_BHWC,
                              train=False)


def to_pixel_range(pair_BHWC: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return pair_BHWC.astype(jnp.float32) / 127.5 - 1.0


def pool_query(pool_PHWC: jax.Array, count: jax.Array, fakes_NHWC: jax.Array,
               key: jax.Array, mix: float = 0.5) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The replay buffer of Shrivastava et al. (CycleGAN's image pool), one image at a time.

  While fewer than P fakes are stored, each new fake is stored and returned. Once full, each
  new fake is, with probability `mix`, swapped for a uniformly chosen stored one (which is
  returned, and the new fake stored in its place), else returned as is. Returns (pool, count,
  images), images being only this query's fakes or fakes stored by earlier ones.
  """
  size = pool_PHWC.shape[0]

  def one(carry, inputs):
    pool, n = carry
    image, k = inputs
    k_mix, k_slot = jax.random.split(k)
    full = n >= size
    swap = full & (jax.random.uniform(k_mix) < mix)
    slot = jnp.where(full, jax.random.randint(k_slot, (), 0, size), n)
    stored = pool[slot]
    pool = pool.at[slot].set(jnp.where(full & ~swap, stored, image))
    return (pool, jnp.minimum(n + 1, size)), jnp.where(swap, stored, image)

  keys = jax.random.split(key, fakes_NHWC.shape[0])
  (pool_PHWC, count), out = lax.scan(one, (pool_PHWC, count), (fakes_NHWC, keys))
  return pool_PHWC, count, out


def _pooled(state: TranslationState, name: str, fakes_BHWC: jax.Array,
            key: jax.Array) -> tuple[dict, jax.Array]:
  """Queries the replay buffer `name` with the global batch of fakes.

  The buffer is replicated: every device gathers all fakes in global order, runs the same
  query with the same key, and keeps its own slice, so N devices match one device.
  """
  if not state.spec.pool_size:
    return {}, fakes_BHWC
  local = fakes_BHWC.shape[0]
  first = lax.axis_index(AXIS) * local
  # All fakes in global order, as a device-invariant value (a psum of zero-padded slices is
  # exact: every entry is one fake plus zeros), so the replicated buffer stays invariant.
  slots = jnp.zeros((local * lax.axis_size(AXIS), *fakes_BHWC.shape[1:]), fakes_BHWC.dtype)
  every = lax.psum(lax.dynamic_update_slice_in_dim(slots, fakes_BHWC, first, 0), AXIS)
  pool, count, out = pool_query(state.pool[name], state.pool[f'{name}_count'], every, key,
                                state.spec.pool_mix)
  mine = lax.dynamic_slice_in_dim(out, first, local)
  return {name: pool, f'{name}_count': count}, mine


def pix2pix_step(state: TranslationState, batch: Batch) -> tuple[TranslationState, Metrics]:
  """One D update, then one G update (the paper's alternation), on one paired batch."""
  spec = state.spec
  a, b = jnp.split(to_pixel_range(batch['image'][0]), 2, axis=-1)
  key = jax.random.fold_in(state.rng, state.step)
  g_key, real_key, fake_key, gd_key = jax.random.split(key, 4)
  pair = lambda x, y: jnp.concatenate([x, y], -1)

  # G's dropout mask is the same in both passes, so D is trained on the G(a) that G then moves.
  fake, _ = apply_train(spec.generator, state.g_params, state.g_stats, a, rng=g_key)
  fake = lax.stop_gradient(fake)

  def d_loss_fn(d_params):
    real_out, stats = apply_train(spec.discriminator, d_params, state.d_stats, pair(a, b),
                                  rng=real_key)
    fake_out, stats = apply_train(spec.discriminator, d_params, stats, pair(a, fake),
                                  rng=fake_key)
    loss = 0.5 * spec.loss.d(real_out, fake_out)
    return lax.pmean(loss, AXIS), (stats, real_out, fake_out)

  (d_loss, (d_stats, real_out, fake_out)), grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(state.d_params)
  updates, d_opt = spec.d_tx.update(grads, state.d_opt, state.d_params)
  d_params = optax.apply_updates(state.d_params, updates)

  def g_loss_fn(g_params):
    out, stats = apply_train(spec.generator, g_params, state.g_stats, a, rng=g_key)
    judged, _ = apply_train(spec.discriminator, d_params, d_stats, pair(a, out), rng=gd_key)
    adversarial, l1 = spec.loss.g(judged), losses.l1(out, b)
    loss = adversarial + spec.l1_weight * l1
    return lax.pmean(loss, AXIS), (stats, lax.pmean({'g_adv': adversarial, 'l1': l1}, AXIS))

  (g_loss, (g_stats, terms)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
      state.g_params)
  updates, g_opt = spec.g_tx.update(grads, state.g_opt, state.g_params)
  metrics = {'d_loss': d_loss, 'g_loss': g_loss, **terms,
             'D(a,b)': lax.pmean(jnp.mean(spec.loss.score(real_out)), AXIS),
             'D(a,G(a))': lax.pmean(jnp.mean(spec.loss.score(fake_out)), AXIS)}
  return state.replace(step=state.step + 1, g_params=optax.apply_updates(state.g_params, updates),
                       g_stats=g_stats, g_opt=g_opt, d_params=d_params, d_stats=d_stats,
                       d_opt=d_opt), metrics


def cyclegan_step(state: TranslationState, batch: Batch) -> tuple[TranslationState, Metrics]:
  """One update of G and F together, then of D_A and D_B together on buffered fakes."""
  spec = state.spec
  a, b = jnp.split(to_pixel_range(batch['image'][0]), 2, axis=-1)
  key = jax.random.fold_in(state.rng, state.step)
  g_key, d_key, pool_a_key, pool_b_key = jax.random.split(key, 4)
  # CycleGAN's nets use instance norm: no running statistics to thread through.
  gen = lambda params, name, x: apply_train(spec.generator, params[name], state.g_stats[name],
                                            x, rng=g_key)[0]
  critic = lambda params, name, x, k: apply_train(spec.discriminator, params[name],
                                                  state.d_stats[name], x, rng=k)[0]

  def g_loss_fn(g_params):
    g_ab = lambda x: gen(g_params, 'ab', x)
    g_ba = lambda x: gen(g_params, 'ba', x)
    fake_b, fake_a = g_ab(a), g_ba(b)
    adversarial = (spec.loss.g(critic(state.d_params, 'b', fake_b, d_key))
                   + spec.loss.g(critic(state.d_params, 'a', fake_a, d_key)))
    # (XLA removes the repeated G(a), F(b) of the cycle term: one jitted computation.)
    cycle = losses.cycle_consistency(g_ab, g_ba, a, b)
    terms = {'g_adv': adversarial, 'cycle': cycle}
    if spec.identity_weight:  # a static choice, not a traced branch
      terms['identity'] = losses.identity_mapping(g_ab, g_ba, a, b)
    loss = adversarial + spec.cycle_weight * cycle + spec.identity_weight * terms.get(
        'identity', 0.0)
    return lax.pmean(loss, AXIS), (fake_a, fake_b, lax.pmean(terms, AXIS))

  (g_loss, (fake_a, fake_b, terms)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
      state.g_params)
  updates, g_opt = spec.g_tx.update(grads, state.g_opt, state.g_params)
  g_params = optax.apply_updates(state.g_params, updates)

  pool_a, seen_a = _pooled(state, 'a', lax.stop_gradient(fake_a), pool_a_key)
  pool_b, seen_b = _pooled(state, 'b', lax.stop_gradient(fake_b), pool_b_key)

  def d_loss_fn(d_params):
    d_k = jax.random.split(d_key, 4)
    loss_a = spec.loss.d(critic(d_params, 'a', a, d_k[0]), critic(d_params, 'a', seen_a, d_k[1]))
    loss_b = spec.loss.d(critic(d_params, 'b', b, d_k[2]), critic(d_params, 'b', seen_b, d_k[3]))
    return lax.pmean(loss_a + loss_b, AXIS), lax.pmean({'d_a': loss_a, 'd_b': loss_b}, AXIS)

  (d_loss, d_terms), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
  updates, d_opt = spec.d_tx.update(grads, state.d_opt, state.d_params)
  metrics = {'g_loss': g_loss, 'd_loss': d_loss, **terms, **d_terms}
  return state.replace(step=state.step + 1, g_params=g_params, g_opt=g_opt,
                       d_params=optax.apply_updates(state.d_params, updates), d_opt=d_opt,
                       pool={**pool_a, **pool_b}), metrics
