"""Every registered model and the schedule pieces: shapes and ranges, clipping, the gradient
penalty, n_critic, G steps, the ACGAN auxiliary loss."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cgan_jax import losses, models, parallel, steps
from cgan_jax import state as state_lib
from configs import default

NUM_CLASSES = 10
# model name -> (side G makes, K of the class head or None, conditional)
EXPECTED = {
    'infogan_cgan': (28, None, True), 'infogan_gan': (28, None, False),
    'mlp_gan': (28, None, False), 'mlp_cgan_concat': (28, None, True),
    'mlp_cgan_embed': (28, None, True),
    'dcgan64': (64, None, False), 'dcgan28': (28, None, False), 'cdcgan': (28, None, True),
    'dcgan28_ln': (28, None, False), 'cdcgan_ln': (28, None, True),
    'acgan': (28, 10, True), 'acgan_fake_class': (28, 11, True),
    'sngan_projection': (28, None, True), 'sngan': (28, None, False),
}


def test_every_registered_model_is_covered():
  gans = {n for n, (family, _) in models.LEGACY_NAMES.items() if family in models.FAMILIES}
  assert gans == set(EXPECTED)
  assert {models.LEGACY_NAMES[n][0] for n in EXPECTED} == set(models.FAMILIES)
  from cgan_jax import kinds
  assert not set(kinds.KINDS) & set(models.FAMILIES)  # a family is of one kind
  assert {kind.table for kind in kinds.registered()} == {'gan', *kinds.KINDS}


def _config(model='infogan_cgan', **overrides):
  c = default.get_config()
  c.z_dim = 100
  c.model = models.from_legacy_name(model)  # the registry names before models took options
  c.update(overrides)
  return c


@pytest.mark.parametrize('name', sorted(models.LEGACY_NAMES))
def test_old_names_are_the_display_labels(name):
  assert models.label(models.from_legacy_name(name)) == name
  assert models.label({'model': name}) == name  # an old config, before upgrading


@pytest.mark.parametrize('model,needle', [
    (dict(name='dcgan', resolution=64, conditioning='concat'),
     "model.conditioning must be 'none' at model.resolution=64"),
    (dict(name='dcgan', g_activation='leaky_relu'), 'model.g_activation applies to'),
    (dict(name='dcgan', layer_norm_axes='hwc'), 'model.layer_norm_axes applies to model.norm'),
    (dict(name='dcgan', resolution=32), 'model.resolution must be one of 28, 64, got 32'),
    (dict(name='mlp', conditioning='concat', g_output_batch_norm=True),
     'model.g_output_batch_norm applies to model.conditioning=embed'),
    (dict(name='sngan', g_width=0), 'model.g_width must be a positive integer'),
    (dict(name='acgan', norm='layer'), "model 'acgan' has no option 'norm'"),
    (dict(name='stylegan9'), "unknown model family 'stylegan9'"),
    (dict(name='pix2pix', norm='batch'), 'its options are in config.translation'),
    ('cdcgan_ln', "that model is now {'conditioning': 'concat'"),
    ('stylegan9', "unknown model 'stylegan9'"),
])
def test_bad_model_groups_are_refused_with_the_option_named(model, needle):
  from cgan_jax import config_validation
  from cgan_jax.errors import UserError
  import ml_collections
  values = default.get_config().to_dict()
  values['model'] = model  # as a config file could set it
  config = ml_collections.ConfigDict(values)
  with pytest.raises(UserError, match=re.escape(needle)):
    config_validation.validate(config)
  with pytest.raises(UserError, match=re.escape(needle)):
    models.build(config, NUM_CLASSES, None)


def test_model_config_refuses_an_option_of_another_family():
  from cgan_jax.errors import UserError
  with pytest.raises(UserError, match="model 'infogan' has no option fake_class"):
    default.model('infogan', fake_class=True)


def test_projection_discriminator_without_spectral_norm_is_the_same_net_unnormalised():
  on = state_lib.build_gan(_config('sngan_projection'), NUM_CLASSES, None)
  config = _config('sngan_projection')
  config.model.spectral_norm = False
  off = state_lib.build_gan(config, NUM_CLASSES, None)
  s_on = state_lib.init_state(on, jax.random.PRNGKey(0), (28, 28, 1))
  s_off = state_lib.init_state(off, jax.random.PRNGKey(0), (28, 28, 1))
  assert jax.tree.leaves(s_on.d_stats) and not jax.tree.leaves(s_off.d_stats)  # no u, σ
  sizes = lambda tree: sorted(x.size for x in jax.tree.leaves(tree))
  assert sizes(s_on.d_params) == sizes(s_off.d_params)
  x = jnp.zeros((2, 28, 28, 1))
  out = off.discriminator.apply({'params': s_off.d_params}, x, jnp.arange(2), train=True)
  assert out.logits.shape == (2,)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_model_shapes_ranges_and_label_use(name):
  side, classes, conditional = EXPECTED[name]
  gan = state_lib.build_gan(_config(model=name), NUM_CLASSES, axis_name=None)
  assert gan.conditional == conditional
  state = state_lib.init_state(gan, jax.random.PRNGKey(0), (28, 28, 1))
  z = jax.vmap(lambda k: gan.latent(k, gan.z_dim))(jax.random.split(jax.random.PRNGKey(1), 6))
  y = jnp.arange(6) % NUM_CLASSES
  variables = {'params': state.g_params, 'batch_stats': state.g_stats}
  x, _ = gan.generator.apply(variables, z, y, train=True, mutable=['batch_stats'])
  lo, hi = gan.pixel_range
  assert x.shape == (6, side, side, 1)
  assert float(x.min()) >= lo and float(x.max()) <= hi and float(x.std()) > 0
  g_params = state.g_params
  if name.startswith('sngan'):
    # Class-conditional BatchNorm starts neutral (every class's γ = 1, β = 0, as in BigGAN):
    # the labels act once the per-class tables differ, as training makes them.
    g_params = jax.tree_util.tree_map_with_path(
        lambda path, p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(len(path)), p.shape)
        if any(getattr(k, 'key', None) in ('gamma', 'beta') for k in path) else p, g_params)
  x_other = state_lib.generate(gan, g_params, state.g_stats, z, (y + 3) % NUM_CLASSES)
  x_same = state_lib.generate(gan, g_params, state.g_stats, z, y)
  assert (float(jnp.abs(x_other - x_same).max()) > 1e-5) == conditional
  out = gan.discriminator.apply({'params': state.d_params, 'batch_stats': state.d_stats},
                                x_same, y, train=False)
  assert out.logits.shape == (6,) and out.logits.dtype == jnp.float32
  if classes is None:
    assert out.class_logits is None
  else:
    assert out.class_logits.shape == (6, classes)


def test_real_images_are_resized_for_64_pixel_models():
  gan = state_lib.build_gan(_config(model='dcgan64'), NUM_CLASSES, axis_name=None)
  image = np.full((2, 28, 28, 1), 255, np.uint8)
  x = steps.to_pixel_range(image, gan)
  assert x.shape == (2, 64, 64, 1)
  np.testing.assert_allclose(x, 1.0, atol=1e-6)


# ---------------------------------------------------------------- the schedule


def _batch(micro, n=16, seed=0):
  rs = np.random.RandomState(seed)
  return {'image': rs.randint(0, 256, (micro, n, 28, 28, 1)).astype(np.uint8),
          'label': rs.randint(0, NUM_CLASSES, (micro, n)).astype(np.int32)}


def _train(gan, batches, num_devices=1, seed=0):
  mesh = parallel.make_mesh(num_devices)
  state = jax.device_put(state_lib.init_state(gan, jax.random.PRNGKey(seed), (28, 28, 1)),
                         parallel.replicated(mesh))
  fn = parallel.data_parallel(steps.train_step, mesh)
  metrics = []
  for b in batches:
    state, m = fn(state, parallel.global_batch(b, mesh))
    metrics.append(m)
  return jax.device_get(state), jax.device_get(metrics)


def _counting(tx):
  """tx followed by a transform whose state counts its updates."""
  return optax.chain(tx, optax.scale_by_schedule(lambda count: 1.0))


def _count(opt_state) -> int:
  return int(opt_state[1].count)


@pytest.mark.parametrize('n_critic,g_steps', [(5, 1), (1, 2), (3, 2)])
def test_each_step_makes_n_critic_d_updates_and_g_steps_g_updates(n_critic, g_steps):
  gan = state_lib.build_gan(_config(model='mlp_gan', n_critic=n_critic, g_steps=g_steps),
                            NUM_CLASSES, steps.AXIS)
  gan = dataclasses.replace(gan, d_tx=_counting(gan.d_tx), g_tx=_counting(gan.g_tx))
  state, _ = _train(gan, [_batch(n_critic, seed=0), _batch(n_critic, seed=1)])
  assert _count(state.d_opt) == 2 * n_critic
  assert _count(state.g_opt) == 2 * g_steps
  assert int(state.step) == 2


def test_each_critic_update_sees_its_own_minibatch():
  """Critic updates on 3 different minibatches differ from 3 updates on the first one."""
  gan = state_lib.build_gan(_config(model='mlp_gan', n_critic=3), NUM_CLASSES, steps.AXIS)
  b = _batch(3)
  same = {k: np.repeat(v[:1], 3, axis=0) for k, v in b.items()}
  a, _ = _train(gan, [b])
  c, _ = _train(gan, [same])
  assert not np.allclose(a.d_params['Dense_0']['kernel'], c.d_params['Dense_0']['kernel'])


def test_wgan_clipping_keeps_every_critic_weight_in_range():
  c = 0.01
  config = _config(model='dcgan28', loss='wasserstein', n_critic=5, clip_critic=c)
  config.d_optimizer = default.optimizer('rmsprop', 5e-5, decay=0.99, eps=1e-8)
  gan = state_lib.build_gan(config, NUM_CLASSES, steps.AXIS)
  init = state_lib.init_state(gan, jax.random.PRNGKey(0), (28, 28, 1))
  # N(0, 0.02) kernels start well outside [-0.01, 0.01]: clipping has work to do.
  assert max(float(jnp.abs(p).max()) for p in jax.tree.leaves(init.d_params)) > 2 * c
  state, metrics = _train(gan, [_batch(5, seed=s) for s in range(2)], num_devices=2)
  leaves = jax.tree.leaves(state.d_params)
  assert all(float(np.abs(p).max()) <= c for p in leaves)
  assert sum(int((np.abs(p) == c).sum()) for p in leaves) > 100  # many sit on the bound
  assert max(float(np.abs(p).max()) for p in jax.tree.leaves(state.g_params)) > c  # G free
  assert all(np.isfinite(v) for m in metrics for v in m.values())


def test_negative_or_zero_schedule_values_are_refused():
  from cgan_jax.errors import UserError
  for bad in (dict(n_critic=0), dict(g_steps=0), dict(clip_critic=-1.0),
              dict(gradient_penalty=-1.0)):
    with pytest.raises(UserError):
      state_lib.build_gan(_config(**bad), NUM_CLASSES, None)


# ---------------------------------------------------------------- gradient penalty


def test_gradient_penalty_of_a_linear_critic_is_its_analytic_value():
  """f(x) = <w, x> + b has ∇f = w everywhere: the penalty is (‖w‖₂ - 1)²."""
  rs = np.random.RandomState(0)
  w = jnp.asarray(rs.randn(28, 28, 1).astype(np.float32)) * 0.1
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + 0.3
  real = jnp.asarray(rs.rand(8, 28, 28, 1), jnp.float32)
  fake = jnp.asarray(rs.rand(8, 28, 28, 1), jnp.float32)
  eps = jnp.asarray(rs.rand(8), jnp.float32)
  want = (float(jnp.linalg.norm(w)) - 1.0) ** 2
  np.testing.assert_allclose(losses.gradient_penalty(critic, real, fake, eps), want, rtol=1e-5)


def test_gradient_penalty_is_taken_at_the_interpolates():
  """f(x) = ½‖x‖² has ∇f(x̂) = x̂ = ε·x + (1 - ε)·x̃: the penalty depends on ε per example."""
  rs = np.random.RandomState(1)
  real = jnp.asarray(rs.randn(4, 5, 5, 1), jnp.float32)
  fake = jnp.asarray(rs.randn(4, 5, 5, 1), jnp.float32)
  eps = jnp.array([0.0, 0.25, 0.5, 1.0])
  critic = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3))
  x_hat = eps[:, None, None, None] * real + (1 - eps[:, None, None, None]) * fake
  norms = np.sqrt(np.sum(np.asarray(x_hat) ** 2, axis=(1, 2, 3)))
  np.testing.assert_allclose(losses.gradient_penalty(critic, real, fake, eps),
                             np.mean((norms - 1.0) ** 2), rtol=1e-5)


def test_wgan_gp_step_adds_the_weighted_penalty():
  config = _config(model='dcgan28_ln', loss='wasserstein', n_critic=2, gradient_penalty=10.0)
  gan = state_lib.build_gan(config, NUM_CLASSES, steps.AXIS)
  no_gp = dataclasses.replace(gan, gp_weight=0.0)
  _, (m,) = _train(gan, [_batch(2)])
  _, (m0,) = _train(no_gp, [_batch(2)])
  assert 'gradient_penalty' in m and 'gradient_penalty' not in m0
  assert m['gradient_penalty'] > 0
  # Same first critic inputs; the losses differ by λ·GP (averaged over the 2 critic updates,
  # whose second already sees different weights, hence the tolerance).
  np.testing.assert_allclose(m['d_loss'] - m0['d_loss'], 10.0 * m['gradient_penalty'],
                             rtol=0.2)


# ---------------------------------------------------------------- ACGAN auxiliary loss


def _nll(logits, targets):
  logits = np.asarray(logits, np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return -np.mean(logp[np.arange(len(targets)), targets])


def test_acgan_aux_loss_paper_layout():
  rs = np.random.RandomState(0)
  y = jnp.array([0, 3, 9, 3])
  real, fake = rs.randn(4, 10).astype(np.float32), rs.randn(4, 10).astype(np.float32)
  aux = losses.acgan_aux(10, fake_class=False)
  np.testing.assert_allclose(aux.d(real, fake, y), _nll(real, y) + _nll(fake, y), rtol=1e-5)
  np.testing.assert_allclose(aux.g(fake, y), _nll(fake, y), rtol=1e-5)


def test_acgan_aux_loss_fake_class_layout():
  rs = np.random.RandomState(1)
  y = jnp.array([1, 2, 2, 7])
  real, fake = rs.randn(4, 11).astype(np.float32), rs.randn(4, 11).astype(np.float32)
  aux = losses.acgan_aux(10, fake_class=True)
  np.testing.assert_allclose(aux.d(real, fake, y), _nll(real, y) + _nll(fake, [10] * 4),
                             rtol=1e-5)
  np.testing.assert_allclose(aux.g(fake, y), _nll(fake, y), rtol=1e-5)
  # A D that is sure every fake is class 10 pays ~0 for fakes, and G pays a lot.
  sure = np.full((4, 11), -20.0, np.float32)
  sure[:, 10] = 20.0
  assert float(aux.d(real, sure, y)) == pytest.approx(_nll(real, y), abs=1e-6)
  assert float(aux.g(sure, y)) > 30


def test_acgan_step_trains_the_class_head():
  gan = state_lib.build_gan(_config(model='acgan'), NUM_CLASSES, steps.AXIS)
  _, metrics = _train(gan, [_batch(1, seed=0)] * 8)  # one batch, learned by heart
  assert {'d_class_loss', 'D_class_acc(x)'} <= set(metrics[0])
  assert metrics[0]['d_class_loss'] > 2 * np.log(10) * 0.8  # ~ two untrained NLLs
  # The class head learns the batch's labels (8 steps here: 5.32 -> 4.15-4.25, real-image
  # accuracy 6 % -> 25-38 %; the fakes' term moves with G, hence the mean of the last 3).
  first, last = metrics[0]['d_class_loss'], np.mean([m['d_class_loss'] for m in metrics[-3:]])
  assert last < 0.85 * first


# ---------------------------------------------------------------- the other loss pairs


def test_wasserstein_hinge_and_least_squares_match_their_formulas():
  real, fake = jnp.array([2.0, -1.0, 0.5]), jnp.array([0.5, 3.0, -2.0])
  r, f = np.asarray(real), np.asarray(fake)
  np.testing.assert_allclose(losses.d_wasserstein(real, fake), f.mean() - r.mean(), rtol=1e-6)
  np.testing.assert_allclose(losses.g_wasserstein(fake), -f.mean(), rtol=1e-6)
  np.testing.assert_allclose(losses.d_hinge(real, fake),
                             np.maximum(0, 1 - r).mean() + np.maximum(0, 1 + f).mean(),
                             rtol=1e-6)
  np.testing.assert_allclose(losses.d_least_squares(real, fake),
                             0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean(), rtol=1e-6)
  np.testing.assert_allclose(losses.g_least_squares(fake), 0.5 * ((f - 1) ** 2).mean(),
                             rtol=1e-6)


@pytest.mark.parametrize('name', ['wasserstein', 'hinge', 'least_squares'])
def test_critic_losses_report_raw_scores(name):
  assert losses.LOSSES[name].score(jnp.array(3.0)) == 3.0
  assert float(losses.LOSSES['non_saturating'].score(jnp.array(0.0))) == 0.5
