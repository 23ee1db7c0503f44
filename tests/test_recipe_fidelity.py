"""The recipes' update schedules as their sources train them (issue 17): the WGAN critic
warm-up's critic counts, the cDCGAN's stepwise learning rate, Keras ACGAN's two D updates per
batch, sampled fake labels, fresh G inputs, seed 001's simultaneous update, torch's RMSProp,
the WGAN-GP critic's LayerNorm over (H, W, C), and each recipe's config turning them on."""

import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cgan_jax import config_validation, models, parallel, schedules, steps
from cgan_jax import state as state_lib
from cgan_jax.errors import UserError
from cgan_jax.models import dcgan, mlp
from configs import default


def _config(**overrides):
  c = default.get_config()
  c.model, c.z_dim = models.from_legacy_name('mlp_cgan_concat'), 8
  c.g_optimizer = default.optimizer('adam', 1e-3, b1=0.5, b2=0.999)
  c.d_optimizer = default.optimizer('adam', 1e-3, b1=0.5, b2=0.999)
  c.update(overrides)
  return c


def _batch(seed=0, n=16, micro=1, label=None):
  rs = np.random.RandomState(seed)
  labels = (np.full((micro, n), label) if label is not None else rs.randint(0, 10, (micro, n)))
  return {'image': rs.randint(0, 256, (micro, n, 28, 28, 1)).astype(np.uint8),
          'label': labels.astype(np.int32)}


def _run(config, batches, step_fn=steps.train_step):
  mesh = parallel.make_mesh(1)
  gan = state_lib.build_gan(config, 10, steps.AXIS)
  state = state_lib.init_state(gan, jax.random.PRNGKey(config.seed), (28, 28, 1))
  fn = parallel.data_parallel(step_fn, mesh, donate=False)
  states, metrics = [jax.device_get(state)], []
  for b in batches:
    state, m = fn(state, parallel.global_batch(b, mesh))
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  return states, metrics


def _same(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# --- WGAN critic warm-up ---------------------------------------------------------------------

def _paper_diters(num_g_iterations, n_critic=5, warm=100, first=25, every=500):
  """The reference WGAN loop's critic iterations before each G iteration."""
  return [warm if g < first or g % every == 0 else n_critic for g in range(num_g_iterations)]


@pytest.mark.parametrize('n_critic,warm,first,every', [
    (5, 100, 25, 500),  # the paper's
    (5, 10, 2, 4), (1, 3, 0, 5), (2, 4, 6, 6), (5, 10, 3, 0)])
def test_warmup_gives_the_papers_critic_counts(n_critic, warm, first, every):
  w = schedules.CriticWarmup(warm, first, every)
  num_steps = 30000 if warm == 100 else 400
  due = np.asarray(jax.jit(lambda s: schedules.g_update_due(w, n_critic, s))(
      jnp.arange(num_steps)))
  ends = np.flatnonzero(due)  # steps whose G update is applied
  critic_counts = np.diff(np.concatenate([[-1], ends])) * n_critic
  expected = (_paper_diters(len(ends), n_critic, warm, first, every) if every else
              [warm] * first + [n_critic] * (len(ends) - first))
  np.testing.assert_array_equal(critic_counts, expected)
  if (n_critic, warm, first, every) == (5, 100, 25, 500):
    # G iterations 0-24 end at steps 19, 39, ..., 499; 25..499 one step each (500..974);
    # G iteration 500 ends 20 steps later, at 994.
    np.testing.assert_array_equal(ends[:25], np.arange(19, 500, 20))
    np.testing.assert_array_equal(ends[25:500], np.arange(500, 975))
    assert ends[500] == 994 and ends[501] == 995
    assert due.sum() == len(ends) and len(ends) > 1000  # reaches the second periodic warm-up


def test_warmup_steps_leave_g_unchanged_and_train_d():
  config = _config(loss='wasserstein', n_critic=2, critic_warmup_iters=4,
                   critic_warmup_first=2, critic_warmup_every=3)
  batches = [_batch(i, n=8, micro=2) for i in range(8)]
  states, metrics = _run(config, batches)
  # r = 2 steps per warm-up G iteration: G iterations 0, 1 end at steps 1, 3; iteration 2 at
  # step 4; iteration 3 (a multiple of 3) at step 6; iteration 4 at step 7.
  expected_due = [0, 1, 0, 1, 1, 0, 1, 1]
  assert [int(m['g_updated']) for m in metrics] == expected_due
  for s, due in enumerate(expected_due):
    before, after = states[s], states[s + 1]
    assert _same(before.g_params, after.g_params) == (not due), s
    assert _same(before.g_opt, after.g_opt) == (not due), s
    assert not _same(before.d_params, after.d_params), s
    d_count = optax.tree_utils.tree_get(after.d_opt, 'count')
    assert int(d_count) == 2 * (s + 1)  # every step makes its 2 critic updates
  assert int(optax.tree_utils.tree_get(states[-1].g_opt, 'count')) == sum(expected_due)


def test_warmup_refuses_a_count_the_step_cannot_express():
  with pytest.raises(UserError, match='multiple of n_critic'):
    state_lib.build_gan(_config(n_critic=5, critic_warmup_iters=12), 10, None)
  assert 'critic_warmup_iters 12 must be a multiple' in ' '.join(
      config_validation.problems(_config(n_critic=5, critic_warmup_iters=12)))


def test_wgan_recipe_carries_the_papers_warmup_off_by_default():
  config = importlib.import_module('configs.wgan').get_config()
  assert state_lib.build_gan(config, 10, None).critic_warmup is None
  config.critic_warmup_iters = 100
  assert state_lib.build_gan(config, 10, None).critic_warmup == schedules.CriticWarmup(100, 25,
                                                                                       500)


# --- learning-rate schedule --------------------------------------------------------------------

def test_staircase_learning_rate_at_chosen_steps():
  lr = schedules.lr_schedule(2e-4, 0.95, 500, updates_per_step=1)
  for step, k in [(0, 0), (499, 0), (500, 1), (999, 1), (1000, 2), (17999, 35)]:
    assert float(lr(step)) == pytest.approx(2e-4 * 0.95 ** k, rel=1e-6), step
  lr2 = schedules.lr_schedule(2e-4, 0.95, 500, updates_per_step=2)  # in train steps
  assert float(lr2(2 * 499 + 1)) == pytest.approx(2e-4, rel=1e-6)
  assert float(lr2(2 * 500)) == pytest.approx(2e-4 * 0.95, rel=1e-6)


def test_built_optimizers_apply_the_decayed_rate():
  """SGD at lr 1 halved every 3 steps: the update of step t is -0.5^floor(t/3) · grad."""
  config = _config(lr_decay_rate=0.5, lr_decay_every_steps=3)
  config.g_optimizer = default.optimizer('sgd', 1.0)
  config.d_optimizer = default.optimizer('sgd', 1.0)
  gan = state_lib.build_gan(config, 10, None)
  for tx in (gan.g_tx, gan.d_tx):
    params = {'w': jnp.zeros(())}
    opt = tx.init(params)
    seen = []
    for _ in range(8):
      updates, opt = tx.update({'w': jnp.ones(())}, opt, params)
      seen.append(-float(updates['w']))
    np.testing.assert_allclose(seen, [1, 1, 1, .5, .5, .5, .25, .25])


def test_cdcgan_recipe_is_the_source_codes_schedule():
  config = importlib.import_module('configs.cdcgan').get_config()
  assert (config.batch_size, config.num_epochs) == (100, 30)
  gan = state_lib.build_gan(config, 10, None)
  assert gan.fresh_g_inputs and not gan.sample_fake_labels
  params = {'w': jnp.zeros(())}
  opt = gan.d_tx.init(params)
  # Adam's first update has magnitude lr (|m̂ / sqrt(v̂)| = 1): read the lr off it at step 500.
  for step in range(501):
    updates, opt = gan.d_tx.update({'w': jnp.ones(())}, opt, params)
    if step in (0, 499):
      assert -float(updates['w']) == pytest.approx(2e-4, rel=1e-4)
  assert -float(updates['w']) == pytest.approx(2e-4 * 0.95, rel=1e-4)


# --- two D updates per batch (Keras ACGAN) ----------------------------------------------------

def test_split_d_step_makes_two_d_updates_per_step():
  split, _ = _run(_config(split_d_step=True), [_batch(i) for i in range(3)])
  joint, _ = _run(_config(), [_batch(i) for i in range(3)])
  assert int(optax.tree_utils.tree_get(split[-1].d_opt, 'count')) == 6
  assert int(optax.tree_utils.tree_get(joint[-1].d_opt, 'count')) == 3
  assert int(optax.tree_utils.tree_get(split[-1].g_opt, 'count')) == 3
  assert not _same(split[-1].d_params, joint[-1].d_params)


def test_split_d_step_is_a_real_step_then_a_fake_step():
  """The split update equals d_step on the real half, then d_step on the fake half."""
  config = _config(split_d_step=True)
  batch = _batch(0)

  def by_hand(state, b):
    x = steps.to_pixel_range(b['image'][0], state.gan)
    y = b['label'][0]
    z = steps.sample_latents(state.gan, state.rng, y.shape[0])
    fake, _ = steps.generate(state, z, y, state.rng)
    s1, _ = steps.d_step(state, x, y, fake, state.rng, on_fake=False)
    s2, _ = steps.d_step(s1, x, y, fake, state.rng, on_real=False)
    s3, m = steps.d_update(state, x, y, fake, y, state.rng)
    return s3, {'diff': sum(jnp.sum(jnp.abs(a - c)) for a, c in zip(
        jax.tree.leaves(s2.d_params), jax.tree.leaves(s3.d_params))),
        'moved': sum(jnp.sum(jnp.abs(a - c)) for a, c in zip(
            jax.tree.leaves(s1.d_params), jax.tree.leaves(s2.d_params)))}

  _, metrics = _run(config, [batch], by_hand)
  assert float(metrics[0]['diff']) == 0.0 and float(metrics[0]['moved']) > 0


def test_loss_halves_add_up_to_the_d_loss():
  from cgan_jax import losses
  r, f = jnp.array([0.3, -1.2, 2.0]), jnp.array([-0.5, 0.7, 1.5])
  for name, pair in losses.LOSSES.items():
    np.testing.assert_allclose(pair.d(r, f), pair.d_real(r) + pair.d_fake(f), rtol=1e-6,
                               err_msg=name)


def test_split_d_step_with_a_gradient_penalty_is_refused():
  with pytest.raises(UserError, match='split_d_step'):
    state_lib.build_gan(_config(split_d_step=True, loss='wasserstein', gradient_penalty=10.0),
                        10, None)


# --- sampled labels, fresh G inputs ----------------------------------------------------------

def test_sampled_labels_are_uniform_and_device_invariant():
  gan = state_lib.build_gan(_config(), 10, None)
  key = jax.random.PRNGKey(3)
  one = jax.vmap(lambda _: steps.sample_labels(gan, key, 40000), axis_name=steps.AXIS)(
      jnp.zeros(1))[0]
  counts = np.bincount(np.asarray(one), minlength=10)
  assert len(counts) == 10 and counts.min() > 0
  chi2 = float(np.sum((counts - 4000) ** 2 / 4000))
  assert chi2 < 27.9, counts  # 9 degrees of freedom: p = 0.001
  four = jax.vmap(lambda _: steps.sample_labels(gan, key, 10000), axis_name=steps.AXIS)(
      jnp.zeros(4))
  np.testing.assert_array_equal(np.asarray(four).reshape(-1), one)


def _spy_labels(monkeypatch):
  """Records (y, z) of every G forward of the step, in trace order."""
  seen = []

  def record(z, y):
    jax.debug.callback(lambda z_, y_: seen.append((np.asarray(y_), np.asarray(z_))), z, y)

  orig_generate, orig_vjp = steps.generate, steps.generate_with_vjp

  def generate(state, z, y, rng):
    record(z, y)
    return orig_generate(state, z, y, rng)

  def generate_with_vjp(state, z, y, rng):
    record(z, y)
    return orig_vjp(state, z, y, rng)

  monkeypatch.setattr(steps, 'generate', generate)
  monkeypatch.setattr(steps, 'generate_with_vjp', generate_with_vjp)
  return seen


def test_sampled_fake_labels_are_not_the_batchs(monkeypatch):
  seen = _spy_labels(monkeypatch)
  _run(_config(sample_fake_labels=True), [_batch(0, n=512, label=3)])
  jax.effects_barrier()
  assert len(seen) == 1  # D's fakes; G's update reuses that forward (same labels and z)
  y = seen[0][0]
  assert np.mean(y == 3) < 0.2 and len(np.unique(y)) == 10


def test_batch_labels_by_default(monkeypatch):
  seen = _spy_labels(monkeypatch)
  _run(_config(), [_batch(0, n=64, label=3)])
  jax.effects_barrier()
  assert len(seen) == 1 and np.all(seen[0][0] == 3)


def test_fresh_g_inputs_draw_new_noise_and_uniform_labels(monkeypatch):
  seen = _spy_labels(monkeypatch)
  _run(_config(fresh_g_inputs=True, g_steps=2), [_batch(0, n=512, label=3)])
  jax.effects_barrier()
  assert len(seen) == 3  # D's fakes, then one forward per G update
  (y_d, z_d), (y_g1, z_g1), (y_g2, z_g2) = seen
  assert np.all(y_d == 3)  # D's fakes keep the batch's labels (cDCGAN code)
  for y, z in ((y_g1, z_g1), (y_g2, z_g2)):
    assert np.mean(y == 3) < 0.2 and len(np.unique(y)) == 10
    assert not np.allclose(z, z_d)
  assert not np.allclose(z_g1, z_g2) and not np.array_equal(y_g1, y_g2)


# --- simultaneous update (seed 001) ----------------------------------------------------------

def test_simultaneous_g_goes_through_the_d_before_its_update():
  """G's update of a simultaneous step equals an alternating step's whose D does not move
  (SGD at lr 0); D's update equals the alternating step's."""
  sim = _config(simultaneous_updates=True)
  alt = _config()
  frozen = _config()
  frozen.d_optimizer = default.optimizer('sgd', 0.0)
  batches = [_batch(0, n=32)]
  s_sim, _ = _run(sim, batches)
  s_alt, _ = _run(alt, batches)
  s_frozen, _ = _run(frozen, batches)
  assert _same(s_sim[-1].g_params, s_frozen[-1].g_params)
  assert _same(s_sim[-1].d_params, s_alt[-1].d_params)
  assert not _same(s_sim[-1].g_params, s_alt[-1].g_params)


# --- optimiser and model details -----------------------------------------------------------------

def test_wgan_rmsprop_is_torchs():
  """torch.optim.RMSprop(lr, alpha=0.99, eps=1e-8): v = 0.01 g², step -lr g / (sqrt(v) + eps)."""
  gan = state_lib.build_gan(importlib.import_module('configs.wgan').get_config(), 10, None)
  g = jnp.array([1e-6, 1e-4, 1.0])
  updates, _ = gan.d_tx.update(g, gan.d_tx.init(jnp.zeros(3)), jnp.zeros(3))
  v = 0.01 * g ** 2
  np.testing.assert_allclose(updates, -5e-5 * g / (jnp.sqrt(v) + 1e-8), rtol=1e-5)
  inside = -5e-5 * g / jnp.sqrt(v + 1e-8)  # optax's default differs where g is small
  assert abs(float(updates[0]) / float(inside[0])) > 5


def _layer_norm_output(axes):
  net = dcgan.Discriminator28(norm='layer', layer_norm_axes=axes)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 28, 28, 1))
  params = net.init(jax.random.PRNGKey(1), x, None, train=False)
  _, inter = net.apply(params, x, None, train=False, capture_intermediates=True)
  return params, inter['intermediates']['LayerNorm_0']['__call__'][0]


def test_wgan_gp_critic_normalises_over_hwc():
  config = importlib.import_module('configs.wgan_gp').get_config()
  assert models.build(config, 10, None).discriminator.layer_norm_axes == 'hwc'
  p_hwc, h = _layer_norm_output('hwc')
  p_c, h_c = _layer_norm_output('channels')
  assert jax.tree.map(jnp.shape, p_hwc) == jax.tree.map(jnp.shape, p_c)  # checkpoints fit
  np.testing.assert_allclose(jnp.mean(h, (1, 2, 3)), 0, atol=1e-4)
  np.testing.assert_allclose(jnp.var(h, (1, 2, 3)), 1, atol=1e-2)
  assert float(jnp.std(jnp.mean(h, -1))) > 0.05  # not normalised per position
  np.testing.assert_allclose(jnp.mean(h_c, -1), 0, atol=1e-4)  # Flax's default: per position


def test_mlp_embed_output_batch_norm():
  g = mlp.EmbedGenerator(output_batch_norm=True)
  z = jax.random.normal(jax.random.PRNGKey(0), (64, 100))
  y = jnp.arange(64) % 10
  variables = g.init(jax.random.PRNGKey(1), z, y, train=False)
  assert 'BatchNorm_2' in variables['params']
  x, _ = g.apply(variables, z, y, train=True, mutable=['batch_stats'])
  np.testing.assert_allclose(jnp.mean(x, 0), 0, atol=1e-4)  # normalised after the tanh
  assert float(jnp.max(jnp.abs(x))) > 1.0
  config = importlib.import_module('configs.cgan_mlp_embed').get_config()
  assert models.build(config, 10, None).generator.output_batch_norm == \
      config.model.g_output_batch_norm


def test_g_activation_option():
  for name, fn in dcgan.G_ACTIVATIONS.items():
    h = jnp.array([-1.0, 2.0])
    np.testing.assert_allclose(fn(h), nn.relu(h) if name == 'relu' else nn.leaky_relu(h, 0.2))
  config = importlib.import_module('configs.dcgan').get_config()
  assert models.build(config, 10, None).generator.activation == config.model.g_activation
  config.model.g_activation = 'leaky_relu'
  assert models.build(config, 10, None).generator.activation == 'leaky_relu'
  config.model.g_activation = 'gelu'
  with pytest.raises(UserError, match='model.g_activation must be one of'):
    models.build(config, 10, None)


@pytest.mark.parametrize('recipe,fields', [
    ('acgan', dict(sample_fake_labels=True, split_d_step=False)),
    ('acgan_fake_class', dict(sample_fake_labels=True, split_d_step=True)),
    ('dcgan', dict(fresh_g_inputs=True)),
    ('cgan', dict(sample_fake_labels=False, fresh_g_inputs=False, split_d_step=False,
                  simultaneous=False, critic_warmup=None)),
])
def test_recipes_turn_on_their_sources_schedule(recipe, fields):
  gan = state_lib.build_gan(importlib.import_module(f'configs.{recipe}').get_config(), 10,
                            None)
  for name, value in fields.items():
    assert getattr(gan, name) == value, name


# --- resume and devices with the new schedule ------------------------------------------------

_RICH = dict(loss='wasserstein', n_critic=2, critic_warmup_iters=4, critic_warmup_first=1,
             critic_warmup_every=3, lr_decay_rate=0.5, lr_decay_every_steps=2,
             sample_fake_labels=True, fresh_g_inputs=True, g_steps=2, split_d_step=True)


def test_schedule_resumes_bit_identically_from_host_arrays():
  """The schedule reads only state.step and the optimizer counts: a state taken to host
  numpy and back (what a checkpoint holds) continues exactly as the uninterrupted run."""
  config = _config(**_RICH)
  batches = [_batch(i, n=8, micro=2) for i in range(6)]
  straight, _ = _run(config, batches)  # straight[3]: the state after 3 steps
  mesh = parallel.make_mesh(1)
  state = jax.device_put(jax.tree.map(np.asarray, straight[3]), parallel.replicated(mesh))
  fn = parallel.data_parallel(steps.train_step, mesh, donate=False)
  for b in batches[3:]:
    state, _ = fn(state, parallel.global_batch(b, mesh))
  assert _same(jax.device_get(state), straight[-1])


def test_schedule_one_and_four_devices_agree():
  assert len(jax.devices()) >= 4, 'conftest sets JAX_NUM_CPU_DEVICES=4'
  config = _config(**_RICH)
  config.g_optimizer = default.optimizer('sgd', 0.01)
  config.d_optimizer = default.optimizer('sgd', 0.01)
  batches = [_batch(i, n=8, micro=2) for i in range(4)]
  results = []
  for n in (1, 4):
    mesh = parallel.make_mesh(n)
    gan = state_lib.build_gan(config, 10, steps.AXIS)
    state = jax.device_put(state_lib.init_state(gan, jax.random.PRNGKey(0), (28, 28, 1)),
                           parallel.replicated(mesh))
    fn = parallel.data_parallel(steps.train_step, mesh)
    for b in batches:
      state, m = fn(state, parallel.global_batch(b, mesh))
    results.append((jax.device_get(state), jax.device_get(m)))
  (one, m1), (four, m4) = results
  for k in m1:
    np.testing.assert_allclose(m1[k], m4[k], rtol=2e-4, atol=1e-5, err_msg=k)
  for a, b in zip(jax.tree.leaves((one.g_params, one.d_params)),
                  jax.tree.leaves((four.g_params, four.d_params))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
