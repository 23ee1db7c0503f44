"""The GAN train step: n_critic discriminator updates, then g_steps generator updates.

This is the file to fork. Everything here is a pure function of (state, batch): no I/O,
no globals, no flags. Every GAN in the registry trains through `train_step`; what differs
between them is data on `state.gan` (the nets, the loss pair, the schedule d_steps/g_steps,
the gradient-penalty weight, the critic's weight constraint, the model's auxiliary terms,
and the sources' schedule variants: sampled fake labels, fresh G inputs, split real/fake D
steps, simultaneous updates, the WGAN critic warm-up; learning-rate schedules live in the
optimizers, see schedules.py).

It runs per device under `jax.shard_map` over the ('data',) mesh axis (see parallel.py).
Each loss is `pmean`-ed over the axis inside the differentiated function, so it is the
global-batch loss; parameters are replicated (device-invariant), and shard_map's autodiff
sums their cotangents over devices, so `grad` is already the global-batch gradient,
identical on every device (an extra pmean of grads would be a no-op). BatchNorm averages
its batch statistics over the same axis. N devices thus compute what one device computes
on the whole global batch.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from cgan_jax import augment, losses, schedules
from cgan_jax.state import GAN, GANState

AXIS = 'data'
# One minibatch per critic update: {'image': uint8 (S, B, H, W, C), 'label': int32 (S, B)},
# S = gan.d_steps; B is this device's share of the global batch.
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DView:
  """What a regulariser of D's loss sees in one D update (`Regularizer`)."""
  state: GANState  # before the update: its extra holds a fork's arrays
  real: Any  # D's outputs on the real images (.logits, .class_logits); None on a fakes-only half
  fake: Any  # D's outputs on the fakes; None on a real-only half
  x_BHWC: jax.Array  # the real images as D saw them (after DiffAugment, if any)
  y_B: jax.Array
  fake_BHWC: jax.Array
  critic: Callable[[jax.Array], jax.Array]  # x -> D(x, y_B).logits with the params being
  # differentiated (for gradient penalties such as R1)


# A term added to D's loss: DView -> (this device's scalar term, its metrics). The term and
# the metrics are averaged over devices with the loss. A fork passes one to train_step.
Regularizer = Callable[[DView], tuple[jax.Array, Metrics]]


def to_pixel_range(image_BHWC: jax.Array, gan: GAN) -> jax.Array:
  """uint8 [0, 255] -> float32 in G's output range, resized to the model's side if it has one."""
  lo, hi = gan.pixel_range
  x = lo + (hi - lo) * image_BHWC.astype(jnp.float32) / 255.0
  if gan.image_size is not None and x.shape[1:3] != (gan.image_size, gan.image_size):
    x = jax.image.resize(x, (x.shape[0], gan.image_size, gan.image_size, x.shape[3]), 'linear')
  return x


def pmean(x):
  """The mean over the ('data',) axis; on a one-device mesh the value itself, so that no
  all-reduce is compiled there (see parallel.per_device)."""
  return x if lax.axis_size(AXIS) == 1 else lax.pmean(x, AXIS)


def example_keys(key: jax.Array, batch_size: int) -> jax.Array:
  """One key per example of this device's part of the batch, folded from its *global* index.

  Keying every per-example draw (noise, labels, augmentation) by global index, not by device,
  makes the step independent of how the global batch is split across devices.
  """
  first = lax.axis_index(AXIS) * batch_size
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(first + jnp.arange(batch_size))


def sample_latents(gan: GAN, key: jax.Array, batch_size: int) -> jax.Array:
  """z for this device's examples (see `example_keys`)."""
  return jax.vmap(lambda k: gan.latent(k, gan.z_dim))(example_keys(key, batch_size))


def _uniform_per_example(key: jax.Array, batch_size: int) -> jax.Array:
  """U(0, 1) per example (see `example_keys`)."""
  return jax.vmap(jax.random.uniform)(example_keys(key, batch_size))


def augment_for_d(gan: GAN, x_BHWC: jax.Array, key: jax.Array) -> jax.Array:
  """DiffAugment's T(x) for D's input (identity when the GAN has no policy), one key per
  example (see `example_keys`)."""
  if not gan.augment:
    return x_BHWC
  return augment.augment(x_BHWC, example_keys(key, x_BHWC.shape[0]), gan.augment)


def update_ema(state: GANState) -> GANState:
  """g_ema <- decay·g_ema + (1 - decay)·G (params and BatchNorm statistics); a copy of G
  before gan.ema_start. Called after G's update of the step; no-op without an EMA."""
  gan = state.gan
  if not gan.ema_decay:
    return state
  decay = jnp.where(state.step >= gan.ema_start, gan.ema_decay, 0.0)
  new = {'params': state.g_params, 'stats': state.g_stats}
  return state.replace(g_ema=optax.incremental_update(new, state.g_ema, 1.0 - decay))


def _cast_floats(tree, dtype):
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tree)


def apply_train(net, params, stats, *args, rng: jax.Array,
                dtype: Any = jnp.float32) -> tuple[Any, Any]:
  """Applies a net in training mode; returns (output, updated BatchNorm statistics).

  dtype bfloat16 (mixed precision): the float32 parameters and float inputs are cast to
  bf16 inside the differentiated function, so every conv/matmul runs on bf16 operands and
  the gradients arrive in float32; Flax's normalisation layers reduce their statistics in
  float32 (running statistics stay float32), and the outputs are cast back to float32
  before any loss is reduced.
  """
  dropout_rng = jax.random.fold_in(rng, lax.axis_index(AXIS))  # distinct masks per device
  if dtype != jnp.float32:
    params, args = _cast_floats(params, dtype), _cast_floats(args, dtype)
  out, new_vars = net.apply({'params': params, 'batch_stats': stats}, *args, train=True,
                            mutable=['batch_stats'], rngs={'dropout': dropout_rng})
  if dtype != jnp.float32:
    out = _cast_floats(out, jnp.float32)
  return out, new_vars.get('batch_stats', stats)


def generate(state: GANState, z_BZ: jax.Array, y_B: jax.Array, rng: jax.Array):
  """G(z, y) in training mode: (images, G's updated BatchNorm statistics)."""
  return apply_train(state.gan.generator, state.g_params, state.g_stats, z_BZ, y_B, rng=rng,
                     dtype=state.gan.compute_dtype)


def generate_with_vjp(state: GANState, z_BZ: jax.Array, y_B: jax.Array, rng: jax.Array):
  """G(z, y) with its pullback: (images, images' cotangent -> grads of g_params, G's stats).

  The step's one G forward: D's update reads the images, G's first update pulls its loss's
  gradient back through the same forward (as a PyTorch loop does with one `fake` tensor).
  """
  def forward(g_params):
    return apply_train(state.gan.generator, g_params, state.g_stats, z_BZ, y_B, rng=rng,
                       dtype=state.gan.compute_dtype)

  fake_BHWC, pullback, g_stats = jax.vjp(forward, state.g_params, has_aux=True)
  return fake_BHWC, lambda ct: pullback(ct)[0], g_stats


def fakes_rng(d_rng: jax.Array) -> jax.Array:
  """The dropout key of the G forward whose images a D update with key `d_rng` reads."""
  return jax.random.split(d_rng, 4)[0]


def d_step(state: GANState, x_BHWC: jax.Array, y_B: jax.Array, fake_BHWC: jax.Array,
           rng: jax.Array, y_fake_B: jax.Array | None = None, *, on_real: bool = True,
           on_fake: bool = True, regularizer: Regularizer | None = None
           ) -> tuple[GANState, Metrics]:
  """One discriminator update on real x and fakes G(z, c) (constants here); G is untouched.

  L_D = loss.d(D(x), D(G(z))) + aux.d(classes) + λ·GP, then D's weights are projected by
  gan.d_constraint (WGAN's clipping; identity for other GANs). c = y_fake_B (default y_B).
  on_real / on_fake (static): the update on one half only, L_D = loss.d_real(D(x)) + aux's
  real term, or loss.d_fake(D(G(z))) + aux's fake term (GAN.split_d_step). A fork's
  `regularizer` adds its term to L_D.
  """
  gan = state.gan
  y_fake_B = y_B if y_fake_B is None else y_fake_B
  _, real_rng, fake_rng, gp_rng = jax.random.split(rng, 4)  # [0]: G's, see `fakes_rng`
  fake_BHWC = lax.stop_gradient(fake_BHWC)
  if gan.augment:  # DiffAugment: real and fakes each through their own T
    aug_key = jax.random.fold_in(rng, 0xA06)
    x_BHWC = augment_for_d(gan, x_BHWC, jax.random.fold_in(aug_key, 0))
    fake_BHWC = augment_for_d(gan, fake_BHWC, jax.random.fold_in(aug_key, 1))

  def loss_fn(d_params):
    stats, real, fake = state.d_stats, None, None
    if on_real:
      real, stats = apply_train(gan.discriminator, d_params, stats, x_BHWC, y_B,
                                rng=real_rng, dtype=gan.compute_dtype)
    if on_fake:
      fake, stats = apply_train(gan.discriminator, d_params, stats, fake_BHWC, y_fake_B,
                                rng=fake_rng, dtype=gan.compute_dtype)
    if on_real and on_fake:
      adversarial = gan.loss.d(real.logits, fake.logits)
    else:
      adversarial = gan.loss.d_real(real.logits) if on_real else gan.loss.d_fake(fake.logits)
    aux = gan.aux.d(None if real is None else real.class_logits,
                    None if fake is None else fake.class_logits, y_B, y_fake_B)
    terms = {'d_adv': adversarial, 'd_aux': aux}
    if gan.gp_weight:  # a static choice of the GAN, not a traced branch
      critic = lambda x: apply_train(gan.discriminator, d_params, stats, x, y_B,
                                     rng=gp_rng, dtype=gan.compute_dtype)[0].logits
      eps_B = _uniform_per_example(gp_rng, x_BHWC.shape[0])
      terms['gp'] = losses.gradient_penalty(critic, x_BHWC, fake_BHWC, eps_B)
    loss = adversarial + aux + gan.gp_weight * terms.get('gp', 0.0)
    if regularizer is not None:
      critic = lambda x: apply_train(gan.discriminator, d_params, state.d_stats, x, y_B,
                                     rng=real_rng, dtype=gan.compute_dtype)[0].logits
      term, terms['fork'] = regularizer(DView(state, real, fake, x_BHWC, y_B, fake_BHWC, critic))
      loss = loss + term
    return pmean(loss), (stats, real, fake, pmean(terms))

  (loss, (stats, real, fake, terms)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.d_params)
  updates, d_opt = gan.d_tx.update(grads, state.d_opt, state.d_params)
  d_params = gan.d_constraint(optax.apply_updates(state.d_params, updates))
  metrics = {'d_loss': loss}
  if real is not None:
    metrics['D(x)'] = pmean(jnp.mean(gan.loss.score(real.logits)))
  if fake is not None:
    metrics['D(G(z))'] = pmean(jnp.mean(gan.loss.score(fake.logits)))
  if gan.gp_weight:
    metrics['gradient_penalty'] = terms['gp']
  metrics.update(terms.get('fork', {}))
  if real is not None and real.class_logits is not None:
    metrics['d_class_loss'] = terms['d_aux']
    metrics['D_class_acc(x)'] = pmean(jnp.mean(jnp.argmax(real.class_logits, -1) == y_B))
  return state.replace(d_params=d_params, d_stats=stats, d_opt=d_opt), metrics


def d_update(state: GANState, x_BHWC: jax.Array, y_B: jax.Array, fake_BHWC: jax.Array,
             y_fake_B: jax.Array, rng: jax.Array, regularizer: Regularizer | None = None
             ) -> tuple[GANState, Metrics]:
  """D's update on one minibatch: one step on real and fakes together, or (gan.split_d_step,
  Keras's `train_on_batch(real)` then `train_on_batch(fake)`) a step on each in turn."""
  if not state.gan.split_d_step:
    return d_step(state, x_BHWC, y_B, fake_BHWC, rng, y_fake_B, regularizer=regularizer)
  state, m_real = d_step(state, x_BHWC, y_B, fake_BHWC, rng, y_fake_B, on_fake=False,
                         regularizer=regularizer)
  state, m_fake = d_step(state, x_BHWC, y_B, fake_BHWC, rng, y_fake_B, on_real=False,
                         regularizer=regularizer)
  merged = {**m_fake, **m_real}
  merged['d_loss'] = m_real['d_loss'] + m_fake['d_loss']
  if 'd_class_loss' in m_real:  # the real half's class loss, plus the fakes' (in its d_loss)
    merged['d_class_loss'] = m_real['d_class_loss']
  return state, merged


def g_loss_of_fakes(state: GANState, fake_BHWC: jax.Array, y_B: jax.Array,
                    rng: jax.Array) -> jax.Array:
  """L_G = loss.g(D(G(z))) + aux.g(classes of G(z)), through the current D (its statistics
  are not updated), averaged over the global batch."""
  gan = state.gan
  fake_BHWC = augment_for_d(gan, fake_BHWC, jax.random.fold_in(rng, 0xA06))
  fake, _ = apply_train(gan.discriminator, state.d_params, state.d_stats, fake_BHWC, y_B,
                        rng=rng, dtype=gan.compute_dtype)
  return pmean(gan.loss.g(fake.logits) + gan.aux.g(fake.class_logits, y_B))


def apply_g_grads(state: GANState, grads, g_stats) -> GANState:
  updates, g_opt = state.gan.g_tx.update(grads, state.g_opt, state.g_params)
  return state.replace(g_params=optax.apply_updates(state.g_params, updates), g_stats=g_stats,
                       g_opt=g_opt)


def g_step_on_fakes(state: GANState, fake_BHWC: jax.Array, pullback: Callable, g_stats,
                    y_B: jax.Array, rng: jax.Array) -> tuple[GANState, Metrics]:
  """One generator update from an existing forward G(z) and its pullback (no G forward)."""
  _, d_rng = jax.random.split(rng)  # as in `g_step`
  loss, ct_BHWC = jax.value_and_grad(
      lambda fake: g_loss_of_fakes(state, fake, y_B, d_rng))(fake_BHWC)
  return apply_g_grads(state, pullback(ct_BHWC), g_stats), {'g_loss': loss}


def g_step(state: GANState, y_B: jax.Array, z_BZ: jax.Array,
           rng: jax.Array) -> tuple[GANState, Metrics]:
  """One generator update through the current D, running G again; D is untouched."""
  g_rng, d_rng = jax.random.split(rng)

  def loss_fn(g_params):
    fake_BHWC, stats = generate(state.replace(g_params=g_params), z_BZ, y_B, g_rng)
    return g_loss_of_fakes(state, fake_BHWC, y_B, d_rng), stats

  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_params)
  return apply_g_grads(state, grads, stats), {'g_loss': loss}


def sample_labels(gan: GAN, key: jax.Array, batch_size: int) -> jax.Array:
  """Labels ~ U{0, ..., K-1} for this device's examples (see `example_keys`)."""
  return jax.vmap(lambda k: jax.random.randint(k, (), 0, gan.num_classes))(
      example_keys(key, batch_size))


def _keep_g_unless(due, new: GANState, old: GANState) -> GANState:
  """new's G (params, statistics, optimizer state) where `due`, else old's; D from new."""
  pick = lambda a, b: jax.tree.map(lambda x, y: jnp.where(due, x, y), a, b)
  return new.replace(g_params=pick(new.g_params, old.g_params),
                     g_stats=pick(new.g_stats, old.g_stats), g_opt=pick(new.g_opt, old.g_opt))


def train_step(state: GANState, batch: Batch, d_regularizer: Regularizer | None = None
               ) -> tuple[GANState, Metrics]:
  """gan.d_steps D updates (one per minibatch of `batch`), then gan.g_steps G updates.

  By default the G updates reuse the labels and noise of the last D update (the recipes'
  "same z"), so with d_steps = g_steps = 1 this is the classic alternating step on one batch.
  G runs forward once per D update; the first G update reuses the last one's forward (G's
  parameters have not changed since) and pulls its gradient back through it; only further
  G updates (g_steps > 1) run G again. The GAN's schedule data change this:
    sample_fake_labels  the fakes' labels are drawn uniformly, not the real batch's;
    fresh_g_inputs      each G update draws its own z and uniform labels (runs G again);
    split_d_step        D steps on the real half, then on the fakes (see `d_update`);
    simultaneous        G's gradient goes through D as it was before the (last) D update;
    critic_warmup       G's update is applied only on the steps that end a G iteration
                        (schedules.g_update_due); the others leave G as it was.
  and two steps any GAN can switch on:
    augment             DiffAugment: every image D sees, real or fake, in D's update and
                        G's, goes through T (cgan_jax/augment.py), differentiably;
    ema_decay           after G's update, g_ema moves towards G (`update_ema`).
  A fork adds a term to D's loss with `d_regularizer` (see `Regularizer`; examples/).
  """
  gan = state.gan
  images_SBHWC, labels_SB = batch['image'], batch['label']
  key = jax.random.fold_in(state.rng, state.step)
  z_key, d_key, g_key = jax.random.split(key, 3)
  # Keys of the optional inputs, apart from the three above (so those keep their bits).
  fake_y_key, g_z_key, g_y_key = jax.random.split(jax.random.fold_in(key, 0x5EED), 3)
  batch_size = labels_SB.shape[1]
  reuse_forward = gan.g_steps and not gan.fresh_g_inputs

  # A Python loop, not lax.scan: XLA:CPU ran the D update 6-8x slower inside a while loop
  # (docs/perf_notes.md). d_steps is static and small, so this only unrolls the trace.
  d_metrics = []
  for i in range(gan.d_steps):
    z_BZ = sample_latents(gan, jax.random.fold_in(z_key, i), batch_size)
    y_B = (sample_labels(gan, jax.random.fold_in(fake_y_key, i), batch_size)
           if gan.sample_fake_labels else labels_SB[i])
    d_rng = jax.random.fold_in(d_key, i)
    if i == gan.d_steps - 1 and reuse_forward:  # its G forward serves G's first update
      fake_BHWC, pullback, g_stats = generate_with_vjp(state, z_BZ, y_B, fakes_rng(d_rng))
    else:
      fake_BHWC, _ = generate(state, z_BZ, y_B, fakes_rng(d_rng))
    before_d = state
    state, m = d_update(state, to_pixel_range(images_SBHWC[i], gan), labels_SB[i], fake_BHWC,
                        y_B, d_rng, d_regularizer)
    d_metrics.append(m)
  # G steps through `view`'s D: the updated one, or (simultaneous) the one before the update.
  view = before_d if gan.simultaneous else state
  g_metrics = {}
  for j in range(gan.g_steps):
    g_rng = jax.random.fold_in(g_key, j)
    if gan.fresh_g_inputs:
      z_BZ = sample_latents(gan, jax.random.fold_in(g_z_key, j), batch_size)
      y_B = sample_labels(gan, jax.random.fold_in(g_y_key, j), batch_size)
    if j == 0 and reuse_forward:
      view, g_metrics = g_step_on_fakes(view, fake_BHWC, pullback, g_stats, y_B, g_rng)
    else:
      view, g_metrics = g_step(view, y_B, z_BZ, g_rng)
  new = state.replace(g_params=view.g_params, g_stats=view.g_stats, g_opt=view.g_opt)
  metrics = {**jax.tree.map(lambda *m: jnp.mean(jnp.stack(m), 0), *d_metrics), **g_metrics}
  if gan.critic_warmup is not None:
    due = schedules.g_update_due(gan.critic_warmup, gan.d_steps, state.step)
    new = _keep_g_unless(due, new, state)
    metrics['g_updated'] = jnp.asarray(due, jnp.float32)
  return update_ema(new).replace(step=state.step + 1), metrics
