"""The modern conditional pieces: projection discriminator, spectral norm, conditional
BatchNorm, the EMA generator and DiffAugment; with all of them on, 1 and 4 devices agree and
a resumed run is bit-identical."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgan_jax import augment, checkpointing, parallel, steps
from cgan_jax import state as state_lib
from cgan_jax.errors import UserError
from cgan_jax.models import infogan, sngan
from configs import cgan_projection, cgan_projection_infogan

K = 10


def _normalize(v):
  return v / max(np.linalg.norm(v), 1e-12)


def _sn_sigma(kernel, u):
  """flax.linen.SpectralNorm's estimate, by hand: one power iteration from the stored u."""
  w = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
  v = _normalize(np.asarray(u, np.float64) @ w.T)
  u = _normalize(v @ w)
  return float((v @ w @ u.T)[0, 0])


def _tiny_d(width=8):
  d = sngan.ProjectionDiscriminator(K, (width,) * 4)
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 28, 28, 1))
  y = jnp.array([0, 1, 2, 3, 9, 9])
  variables = d.init(jax.random.PRNGKey(1), x, y, train=False)
  return d, variables, x, y


def _projection_by_hand(variables, intermediates, y):
  """ψ(φ) + ⟨embed(y), φ⟩ in float64 from D's φ, with ψ's and the embedding's kernels
  divided by their spectral-norm estimates."""
  phi = np.asarray(intermediates['intermediates']['phi'][0], np.float64)
  params, stats = variables['params'], variables['batch_stats']
  w_psi, b_psi = np.asarray(params['psi']['kernel']), np.asarray(params['psi']['bias'])
  table = np.asarray(params['embed']['kernel'])
  s_psi = _sn_sigma(w_psi, stats['psi_sn']['psi/kernel/u'])
  s_emb = _sn_sigma(table, stats['embed_sn']['embed/kernel/u'])
  return phi @ (w_psi[:, 0] / s_psi) + b_psi[0] + np.sum(table[np.asarray(y)] / s_emb * phi, -1)


def test_projection_logit_is_psi_of_phi_plus_embedding_inner_product():
  d, variables, x, y = _tiny_d()
  out, inter = d.apply(variables, x, y, train=False, mutable=['intermediates'])
  np.testing.assert_allclose(out.logits, _projection_by_hand(variables, inter, y),
                             rtol=1e-4, atol=1e-4)
  # The label enters through the projection only: the class term changes with y.
  other, _ = d.apply(variables, x, (y + 1) % K, train=False, mutable=['intermediates'])
  assert float(jnp.abs(other.logits - out.logits).min()) > 0
  # Unconditional: no embedding, and y is ignored.
  plain = sngan.ProjectionDiscriminator(K, (8,) * 4, conditional=False)
  pv = plain.init(jax.random.PRNGKey(1), x, y, train=False)
  assert 'embed' not in pv['params']
  np.testing.assert_array_equal(plain.apply(pv, x, y, train=False).logits,
                                plain.apply(pv, x, (y + 3) % K, train=False).logits)


def test_projection_on_the_seed_nets_replaces_the_label_inputs_by_projection_and_cbn():
  """infogan, conditioning='projection': D has no label maps and no BatchNorm, every layer
  spectrally normalised, logit ψ(φ) + ⟨embed(y), φ⟩; G has no one-hot input and three
  class-conditional BatchNorms."""
  d = infogan.Discriminator(K, projection=True)
  x = jax.random.uniform(jax.random.PRNGKey(0), (5, 28, 28, 1))
  y = jnp.array([0, 3, 3, 8, 9])
  variables = d.init(jax.random.PRNGKey(1), x, y, train=False)
  params, stats = variables['params'], variables['batch_stats']
  assert params['Conv_0']['kernel'].shape[2] == 1  # the image only: no label maps
  assert not any('BatchNorm' in k for k in params)
  assert sorted(stats) == ['Conv_0_sn', 'Conv_1_sn', 'Dense_0_sn', 'embed_sn', 'psi_sn']
  out, inter = d.apply(variables, x, y, train=False, mutable=['intermediates'])
  assert inter['intermediates']['phi'][0].shape == (5, 1024)
  np.testing.assert_allclose(out.logits, _projection_by_hand(variables, inter, y),
                             rtol=1e-4, atol=1e-4)
  g = infogan.Generator(K, projection=True)
  z = jax.random.uniform(jax.random.PRNGKey(2), (5, 62), minval=-1, maxval=1)
  gv = g.init(jax.random.PRNGKey(3), z, y, train=False)
  assert gv['params']['Dense_0']['kernel'].shape[0] == 62  # z only: no one-hot
  cbns = sorted(k for k in gv['params'] if k.startswith('ConditionalBatchNorm'))
  assert len(cbns) == 3 and not any(k.startswith('BatchNorm') for k in gv['params'])
  # Neutral at init (γ = 1, β = 0 for every class); the class acts through its own γ, β.
  same = g.apply(gv, z, y, train=False)
  np.testing.assert_array_equal(same, g.apply(gv, z, (y + 1) % K, train=False))
  gamma = {'embedding': 1 + jax.random.normal(jax.random.PRNGKey(4), (K, 1024))}
  p = {**gv['params'], 'ConditionalBatchNorm_0': {**gv['params']['ConditionalBatchNorm_0'],
                                                  'gamma': gamma}}
  moved = g.apply({**gv, 'params': p}, z, y, train=False)
  assert float(jnp.abs(moved - same).max()) > 1e-4
  np.testing.assert_array_equal(moved[1], g.apply({**gv, 'params': p}, z, y.at[0].set(9),
                                                  train=False)[1])  # row 1 kept its class


def test_spectral_norm_sigma_converges_to_the_largest_singular_value():
  d, variables, x, y = _tiny_d()
  params, stats = variables['params'], variables['batch_stats']
  step = jax.jit(lambda s: d.apply({'params': params, 'batch_stats': s}, x, y, train=True,
                                   mutable=['batch_stats'])[1]['batch_stats'])
  for _ in range(300):  # power iterations, one per training forward; weights fixed
    stats = step(stats)
  kernels = {
      ('block1', 'conv2'): params['block1']['conv2']['kernel'],
      ('block0', 'shortcut'): params['block0']['shortcut']['kernel'],
      ('block3', 'conv1'): params['block3']['conv1']['kernel'],
      ('embed',): params['embed']['kernel'],
  }
  for path, kernel in kernels.items():
    node = stats
    for part in path[:-1]:
      node = node[part]
    sigma = node[f'{path[-1]}_sn'][f'{path[-1]}/kernel/sigma']
    top = np.linalg.svd(np.asarray(kernel).reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    np.testing.assert_allclose(float(sigma), top, rtol=2e-3, err_msg=str(path))
  # Inference mode leaves the power-iteration state alone.
  _, frozen = d.apply({'params': params, 'batch_stats': stats}, x, y, train=False,
                      mutable=['batch_stats'])
  for a, b in zip(jax.tree.leaves(frozen['batch_stats']), jax.tree.leaves(stats)):
    np.testing.assert_array_equal(a, b)


def test_conditional_batch_norm_uses_each_class_gamma_and_beta():
  cbn = sngan.ConditionalBatchNorm(K)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 3, 5))
  y = jnp.array([2, 7, 2, 7])
  variables = cbn.init(jax.random.PRNGKey(1), x, y, train=False)
  gamma = np.arange(K * 5, dtype=np.float32).reshape(K, 5) / 10 + 0.5
  beta = -np.arange(K * 5, dtype=np.float32).reshape(K, 5) / 7
  params = {'gamma': {'embedding': gamma}, 'beta': {'embedding': beta}}
  out = cbn.apply({'params': params, 'batch_stats': variables['batch_stats']}, x, y,
                  train=False)
  x_hat = np.asarray(x) / np.sqrt(1 + 1e-5)  # running mean 0, variance 1 at init
  expected = x_hat * gamma[np.asarray(y)][:, None, None] + beta[np.asarray(y)][:, None, None]
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  # In training, each channel is standardised over the batch first, then class-scaled.
  trained, _ = cbn.apply({'params': params, 'batch_stats': variables['batch_stats']}, x, y,
                         train=True, mutable=['batch_stats'])
  xs = np.asarray(x)
  std = (xs - xs.mean((0, 1, 2))) / np.sqrt(xs.var((0, 1, 2)) + 1e-5)
  np.testing.assert_allclose(
      trained, std * gamma[np.asarray(y)][:, None, None] + beta[np.asarray(y)][:, None, None],
      rtol=1e-4, atol=1e-4)
  # On (B, F) features (the FC layers of the seed's G), the same per-class affine.
  x2 = jax.random.normal(jax.random.PRNGKey(2), (4, 5))
  v2 = cbn.init(jax.random.PRNGKey(1), x2, y, train=False)
  out2 = cbn.apply({'params': params, 'batch_stats': v2['batch_stats']}, x2, y, train=False)
  np.testing.assert_allclose(out2, np.asarray(x2) / np.sqrt(1 + 1e-5) * gamma[np.asarray(y)]
                             + beta[np.asarray(y)], rtol=1e-5, atol=1e-5)


def _config(recipe=cgan_projection, **overrides):
  c = recipe.get_config()
  if c.model.name == 'sngan':
    c.model.update(dict(g_width=8, d_width=8))
  else:  # the seed's nets: D's minibatch stddev on too, in groups of 2 (a device's share)
    c.model.minibatch_std = 2
  c.update(dict(n_critic=2, z_dim=16, batch_size=8, ema_decay=0.9,
                ema_start_step=2, diffaugment='color,translation,cutout'))
  c.update(overrides)
  return c


def test_ema_equals_its_closed_form_after_k_updates():
  gan = state_lib.build_gan(_config(ema_decay=0.75, ema_start_step=2), K, None)
  state = state_lib.init_state(gan, jax.random.PRNGKey(0), (28, 28, 1))
  first = jax.tree.leaves(state.g_params)[0]
  seq = [jax.tree.map(lambda p, i=i: p + 0.1 * (i + 1), state.g_params) for i in range(6)]
  for i, params in enumerate(seq):  # step i: G's params after its update are seq[i]
    state = steps.update_ema(state.replace(g_params=params, step=jnp.asarray(i)))
  # Steps 0, 1 are before ema_start: copies; steps 2..5 average with decay 0.75.
  d, leaf = 0.75, lambda i: np.asarray(first) + 0.1 * (i + 1)
  expected = d ** 4 * leaf(1) + sum((1 - d) * d ** (5 - i) * leaf(i) for i in range(2, 6))
  np.testing.assert_allclose(jax.tree.leaves(state.g_ema['params'])[0], expected, rtol=1e-5)
  # BatchNorm statistics are averaged too; with no EMA the state has none.
  assert jax.tree.leaves(state.g_ema['stats'])
  plain = state_lib.init_state(state_lib.build_gan(_config(ema_decay=0.0), K, None),
                               jax.random.PRNGKey(0), (28, 28, 1))
  assert plain.g_ema == {}
  assert state_lib.sampling_generator(plain)[0] is plain.g_params
  assert state_lib.sampling_generator(state)[0] is state.g_ema['params']
  assert state_lib.sampling_generator(state, 'raw')[0] is state.g_params
  with pytest.raises(UserError, match='no EMA'):
    state_lib.sampling_generator(plain, 'ema')


def _images(n=4, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, 16, 16, 3), minval=-1, maxval=1)


@pytest.mark.parametrize('policy', [('color',), ('translation',), ('cutout',),
                                    ('color', 'translation', 'cutout')])
def test_augmentation_is_keyed_and_differentiable(policy):
  x = _images()
  keys = jax.random.split(jax.random.PRNGKey(3), 4)
  a, b = augment.augment(x, keys, policy), augment.augment(x, keys, policy)
  np.testing.assert_array_equal(a, b)  # same keys, same transformation
  other = augment.augment(x, jax.random.split(jax.random.PRNGKey(4), 4), policy)
  assert float(jnp.abs(other - a).max()) > 1e-3
  # Each image is transformed by its own key: image 0's output depends on keys[0] only.
  swapped = augment.augment(x, keys.at[1].set(keys[2]), policy)
  np.testing.assert_array_equal(swapped[0], a[0])
  # For a fixed key T is affine in x: the gradient is exact against a central difference.
  w = jax.random.normal(jax.random.PRNGKey(5), x.shape)
  f = lambda x: jnp.sum(augment.augment(x, keys, policy) * w)
  g = jax.grad(f)(x)
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
  v = jax.random.normal(jax.random.PRNGKey(6), x.shape)
  eps = 1e-2
  np.testing.assert_allclose(float(jnp.sum(g * v)), float(f(x + eps * v) - f(x - eps * v)) / (2 * eps),
                             rtol=1e-3, atol=1e-3)


def test_translation_shifts_with_zero_fill_and_cutout_zeroes_half_a_side():
  x = _images(n=16)
  keys = jax.random.split(jax.random.PRNGKey(0), 16)
  moved = np.asarray(augment.augment(x, keys, ('translation',)))
  for i in range(16):
    hits = []
    for dy in range(-2, 3):
      for dx in range(-2, 3):
        ref = np.zeros((20, 20, 3), np.float32)
        ref[2 + dy:18 + dy, 2 + dx:18 + dx] = x[i]
        if np.array_equal(ref[2:18, 2:18], moved[i]):
          hits.append((dy, dx))
    assert hits, f'image {i} is not a shift of at most 2 px (1/8 of 16) with zero fill'
  cut = np.asarray(augment.augment(jnp.ones((16, 16, 16, 1)), keys, ('cutout',)))
  zeros = (cut == 0).sum((1, 2, 3))
  assert zeros.max() == 64 and zeros.min() >= 1  # an 8x8 square, clipped at the borders
  with pytest.raises(ValueError, match='unknown augmentation'):
    augment.parse_policy('color,flip')


def _batches(n, micro=2, batch=8):
  rs = np.random.RandomState(0)
  return [{'image': rs.randint(0, 256, (micro, batch, 28, 28, 1)).astype(np.uint8),
           'label': rs.randint(0, K, (micro, batch)).astype(np.int32)} for _ in range(n)]


# The seed-net variant is opt-in (`make test-opt-in`, 38-40 s of a CI run): it runs the same
# pieces (projection, spectral norm, EMA, DiffAugment) on the seed's conv nets instead of the
# ResNets, which the first case already checks across devices, and D's minibatch stddev
# (tests/test_minibatch_std.py checks its per-device groups in CI).
@pytest.mark.parametrize('recipe', [
    cgan_projection, pytest.param(cgan_projection_infogan, marks=pytest.mark.opt_in)],
    ids=lambda r: r.__name__.split('.')[-1])
def test_one_and_four_devices_agree_with_every_piece_on(recipe):
  assert len(jax.devices()) >= 4, 'conftest sets JAX_NUM_CPU_DEVICES=4'
  # n_critic as each recipe has it: 2 (of the paper's 5) for the ResNets, 1 on the seed's nets.
  config = _config(recipe, n_critic=2 if recipe is cgan_projection else 1)
  # SGD, not Adam: Adam turns the rounding-level gradients of the conv biases just before a
  # BatchNorm (which cancels them) into full-size steps of either sign.
  config.g_optimizer = cgan_projection.default.optimizer('sgd', 0.01)
  config.d_optimizer = cgan_projection.default.optimizer('sgd', 0.01)
  results = []
  for n in (1, 4):
    mesh = parallel.make_mesh(n)
    gan = state_lib.build_gan(config, K, steps.AXIS)
    state = jax.device_put(state_lib.init_state(gan, jax.random.PRNGKey(0), (28, 28, 1)),
                           parallel.replicated(mesh))
    fn = parallel.data_parallel(steps.train_step, mesh)
    for b in _batches(3):
      state, m = fn(state, parallel.global_batch(b, mesh))
    results.append((jax.device_get(state), jax.device_get(m)))
  (one, m1), (four, m4) = results
  for k in m1:
    np.testing.assert_allclose(m1[k], m4[k], rtol=2e-3, atol=1e-4, err_msg=k)
  # Parameters, the EMA and the spectral norms' power-iteration state (in d_stats).
  for name in ('g_params', 'd_params', 'g_ema', 'd_stats'):
    a, b = jax.tree.leaves(getattr(one, name)), jax.tree.leaves(getattr(four, name))
    assert a, name
    for x, y in zip(a, b):
      np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-4, err_msg=name)


def test_resume_is_bit_identical_with_ema_and_spectral_norm_state(tmp_path):
  """Two steps, an Orbax checkpoint, a restore into a fresh template, two more steps: the
  same bits as four steps straight, EMA and power-iteration state included."""
  gan = state_lib.build_gan(_config(ema_start_step=1), K, steps.AXIS)
  mesh = parallel.make_mesh(1)
  fn = parallel.data_parallel(steps.train_step, mesh, donate=False)
  batches = [parallel.global_batch(b, mesh) for b in _batches(4)]
  start = jax.device_put(state_lib.init_state(gan, jax.random.PRNGKey(0), (28, 28, 1)),
                         parallel.replicated(mesh))
  straight = start
  for b in batches:
    straight, _ = fn(straight, b)
  half = start
  for b in batches[:2]:
    half, _ = fn(half, b)
  with checkpointing.Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(half, {'config': {}})
  template = state_lib.abstract_state(gan, (28, 28, 1), parallel.replicated(mesh))
  resumed = checkpointing.Checkpointer(str(tmp_path), read_only=True).restore_state(template)
  for b in batches[2:]:
    resumed, _ = fn(resumed, b)
  a, b = jax.device_get(straight), jax.device_get(resumed)
  sn = [p for p, _ in jax.tree_util.tree_flatten_with_path(b.d_stats)[0] if 'kernel/u' in str(p)]
  assert sn and b.g_ema  # the state does carry both
  assert int(b.step) == 4
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  # The EMA has moved away from the trained G since ema_start.
  ema, raw = jax.tree.leaves(b.g_ema['params']), jax.tree.leaves(b.g_params)
  assert any(float(np.abs(e - r).max()) > 0 for e, r in zip(ema, raw))


def test_checkpoint_without_g_ema_restores(tmp_path):
  """A checkpoint written before GANState had g_ema (no such key) restores, with g_ema {}."""
  import flax.serialization
  import orbax.checkpoint as ocp
  from configs import cgan_fashion_mnist
  config = cgan_fashion_mnist.get_config()
  gan = state_lib.build_gan(config, K, None)
  state = state_lib.init_state(gan, jax.random.PRNGKey(0), (28, 28, 1))
  old = flax.serialization.to_state_dict(state)
  del old['g_ema']
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt._manager.save(0, args=ocp.args.Composite(
      state=ocp.args.StandardSave(old),
      meta=ocp.args.JsonSave({'config': config.to_dict(), 'format_version': 1, 'step': 0})))
  ckpt.close()
  template = state_lib.abstract_state(gan, (28, 28, 1),
                                      jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  restored = checkpointing.Checkpointer(str(tmp_path), read_only=True).restore_state(template)
  assert restored.g_ema == {}
  for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize('field,value,message', [
    ('ema_decay', 1.0, 'ema_decay'), ('diffaugment', 'color,zoom', 'unknown augmentation'),
    ('model.g_width', 0, 'model.g_width must be a positive integer'),
    ('model.conditioning', 'concat', "model.conditioning must be one of 'none', 'projection'")])
def test_bad_modern_fields_are_refused(field, value, message):
  with pytest.raises(UserError, match=message):
    from cgan_jax import config_validation
    config = _config()
    group, name = (config.model, field[6:]) if field.startswith('model.') else (config, field)
    group[name] = value
    config_validation.validate(config)
    state_lib.build_gan(config, K, None)


def test_evaluation_options_refuse_an_unknown_generator():
  from cgan_jax import evaluation
  with pytest.raises(UserError, match='--generator must be one of auto, ema, raw, both'):
    evaluation.Options(generator='average')
  assert evaluation.Options(generator='both').generator == 'both'
