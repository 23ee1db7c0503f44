"""pix2pix and CycleGAN: nets, losses, replay buffer, edge operator, data tasks, and both
recipes through train.py (checkpoints, resume, grids, TensorBoard events, bad input)."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cgan_jax import losses, parallel, tasks, translation_data
from cgan_jax import translation_steps as ts
from cgan_jax.errors import UserError
from cgan_jax.models import cyclegan, pix2pix
from configs import cyclegan as cyclegan_config
from configs import default
from configs import pix2pix as pix2pix_config
from conftest import run_script
from test_train_e2e import _checkpoint_steps

# Tiny nets: the tests check wiring and semantics, not image quality.
SMALL = dict(g_base=8, d_base=8, res_blocks=1)


def _small(config, **overrides):
  config.translation.update(SMALL)
  for key, value in overrides.items():
    config[key] = value
  return config


# ---------------------------------------------------------------------------------- nets

@pytest.mark.parametrize('side', [4, 8, 16, 32, 64])
def test_unet_output_shape_equals_input_shape(side):
  # Shapes only (traced, not compiled: compiling the U-Net took 8-16 s per side); the output
  # range is checked on a real forward pass in test_unet_skips_carry_the_input.
  net = pix2pix.UNet(out_channels=3, base=4)
  x = jax.ShapeDtypeStruct((2, side, side, 3), jnp.float32)
  y = jax.eval_shape(lambda x: net.apply(net.init(jax.random.PRNGKey(0), x, train=False), x,
                                         train=False), x)
  assert y.shape == x.shape and y.dtype == jnp.float32


@pytest.mark.parametrize('side', [24, 28, 2])
def test_unet_refuses_sides_its_halvings_cannot_reach(side):
  with pytest.raises(ValueError, match='power of two'):
    pix2pix.UNet(base=4).init(jax.random.PRNGKey(0), jnp.zeros((1, side, side, 1)), train=False)


def test_unet_skips_carry_the_input():
  """Changing one input pixel changes the output near it (the U-Net is not a bottleneck)."""
  net = pix2pix.UNet(base=4, dropout=0.0)
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, 16, 16, 1))
  variables = net.init(jax.random.PRNGKey(0), x, train=False)
  y0 = net.apply(variables, x, train=False)
  y1 = net.apply(variables, x.at[0, 3, 3, 0].add(1.0), train=False)
  assert float(jnp.abs(y1 - y0)[0, :8, :8].max()) > 1e-4
  assert y0.shape == x.shape and 0 < float(jnp.abs(y0).max()) <= 1.0  # tanh's range, not all 0


def test_resnet_generator_and_patch_discriminator_shapes():
  g = cyclegan.ResnetGenerator(out_channels=1, base=4, blocks=2)
  x = jnp.zeros((2, 32, 32, 1))
  y = jax.jit(lambda x: g.apply(g.init(jax.random.PRNGKey(0), x, train=False), x,
                                train=False))(x)
  assert y.shape == x.shape
  d = pix2pix.PatchDiscriminator(base=4, layers=1)
  out = d.apply(d.init(jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 2)), train=False),
                jnp.zeros((2, 32, 32, 2)), train=False)
  assert out.shape == (2, 16, 16)  # 16x16 patches, each a 16-pixel receptive field
  with pytest.raises(ValueError, match='divisible by 4'):
    g.init(jax.random.PRNGKey(0), jnp.zeros((1, 30, 30, 1)), train=False)


# -------------------------------------------------------------------------------- losses

def test_cycle_loss_is_zero_for_identity_generators_and_exact_otherwise():
  a = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 1))
  b = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  identity = lambda x: x
  assert float(losses.cycle_consistency(identity, identity, a, b)) == 0.0
  assert float(losses.identity_mapping(identity, identity, a, b)) == 0.0
  # G adds 0.5 and F subtracts 0.25: F(G(a)) - a = 0.25 and G(F(b)) - b = 0.25 everywhere.
  g, f = (lambda x: x + 0.5), (lambda x: x - 0.25)
  assert float(losses.cycle_consistency(g, f, a, b)) == pytest.approx(0.5)
  assert float(losses.identity_mapping(g, f, a, b)) == pytest.approx(0.75)


# ------------------------------------------------------------------------- replay buffer

def test_replay_buffer_fills_first_and_then_returns_only_past_fakes():
  """Fakes are numbered images; what comes back must be this query's or an earlier one's."""
  size, steps, batch = 5, 60, 4
  pool, count = jnp.zeros((size, 1, 1, 1)), jnp.zeros((), jnp.int32)
  query = jax.jit(ts.pool_query)
  returned_past = total = 0
  for t in range(steps):
    ids = 1 + t * batch + np.arange(batch)              # fake #ids, all > 0
    fakes = jnp.asarray(ids, jnp.float32).reshape(batch, 1, 1, 1)
    pool, count, out = query(pool, count, fakes, jax.random.PRNGKey(t))
    out = np.asarray(out).reshape(-1)
    if t * batch + batch <= size:                       # not full yet: the new fakes back
      np.testing.assert_array_equal(out, ids)
    assert np.all(out >= 1), 'returned an empty slot'
    assert np.all(out <= ids.max()), 'returned a fake from the future'
    # Each returned image is its own fake or one stored before it (a strictly older one).
    assert np.all((out == ids) | (out < ids))
    if t * batch >= size:
      returned_past += int(np.sum(out != ids))
      total += batch
    stored = np.asarray(pool).reshape(-1)
    assert len(set(stored.tolist())) == size             # no slot duplicated or lost
  assert int(count) == size
  share = returned_past / total
  assert abs(share - 0.5) < 0.1, share  # the documented mixing probability (n = 220)


def test_replay_buffer_mixing_probability_is_the_configured_one():
  pool = jnp.arange(1.0, 51.0).reshape(50, 1, 1, 1)
  fakes = -jnp.arange(1.0, 2001.0).reshape(2000, 1, 1, 1)  # distinct ids
  for mix in (0.0, 0.2, 1.0):
    _, _, out = ts.pool_query(pool, jnp.array(50), fakes, jax.random.PRNGKey(3), mix)
    share = float(jnp.mean(out != fakes))  # swapped for a stored one
    assert abs(share - mix) < 0.03, (mix, share)


# ------------------------------------------------------------------------ edge operator

def test_sobel_edges_match_a_hand_computed_case():
  """A vertical step 0 | 90: Sobel x-response 4·90 = 360 on the two columns beside the step,
  0 elsewhere (replicated borders), so after scaling to the peak: 255 there, 0 elsewhere."""
  image = np.zeros((1, 5, 6, 1), np.uint8)
  image[:, :, 3:] = 90
  edges = translation_data.sobel_edges(image)[0, ..., 0]
  expected = np.zeros((5, 6), np.uint8)
  expected[:, 2:4] = 255
  np.testing.assert_array_equal(edges, expected)
  # A diagonal neighbourhood, by hand: a single bright pixel at the centre of a 3x3 image.
  dot = np.zeros((1, 3, 3, 1), np.uint8)
  dot[0, 1, 1, 0] = 100
  g = translation_data.sobel_edges(dot)[0, ..., 0]
  # |Sx|, |Sy| at the edge-centres are 2·100, at the corners 1·100 each: magnitudes 200 and
  # 100·√2, scaled by 255/200; the centre has 0.
  np.testing.assert_array_equal(g, np.round(np.array(
      [[255 * np.sqrt(2) / 2, 255, 255 * np.sqrt(2) / 2], [255, 0, 255],
       [255 * np.sqrt(2) / 2, 255, 255 * np.sqrt(2) / 2]])).astype(np.uint8))
  assert translation_data.sobel_edges(np.full((1, 4, 4, 1), 7, np.uint8)).max() == 0


def test_edges_task_pairs_edge_maps_with_real_images(fashion_dir):
  config = pix2pix_config.get_config()
  config.num_train_examples = 100
  pairs, labels = tasks.build(config).load('train')
  assert pairs.shape == (100, 32, 32, 2) and pairs.dtype == np.uint8
  edges, images = pairs[..., :1], pairs[..., 1:]
  assert images[:, :2].max() == 0 and images[:, -2:].max() == 0   # zero padding 28 -> 32
  np.testing.assert_array_equal(edges[:, 2:30, 2:30],
                                translation_data.sobel_edges(images[:, 2:30, 2:30]))
  assert labels.shape == (100,)


def test_classes_task_is_unpaired_class_a_and_class_b(fashion_dir):
  config = cyclegan_config.get_config()      # Sneaker (7) <-> Ankle boot (9)
  assert translation_data.class_pair(config) == (7, 9)
  pairs, _ = tasks.build(config).load('train')
  assert pairs.shape == (6000, 32, 32, 2)
  from cgan_jax import input_pipeline
  images, labels = input_pipeline.load_split('fashion_mnist', 'train', allow_download=False)
  sneakers = {x.tobytes() for x in translation_data.pad_to(images[labels == 7], 32)}
  boots = {x.tobytes() for x in translation_data.pad_to(images[labels == 9], 32)}
  assert all(np.ascontiguousarray(p[..., :1]).tobytes() in sneakers for p in pairs[:200])
  assert all(np.ascontiguousarray(p[..., 1:]).tobytes() in boots for p in pairs[:200])


@pytest.mark.parametrize('a, b, message', [('Sneaker', 'Sneaker', 'same class'),
                                           ('Sneakers', 'Bag', 'unknown fashion_mnist class'),
                                           ('3', '10', 'out of range')])
def test_bad_class_choice_is_refused(a, b, message):
  config = cyclegan_config.get_config()
  config.translation.class_a, config.translation.class_b = a, b
  with pytest.raises(UserError, match=message):
    tasks.build(config)


def _write_folder(root, split, names_a, names_b, side=20, channels=1, seed=0):
  rs = np.random.RandomState(seed)
  for sub, names in (('A', names_a), ('B', names_b)):
    os.makedirs(root / split / sub, exist_ok=True)
    for name in names:
      shape = (side, side) if channels == 1 else (side, side, 3)
      Image.fromarray(rs.randint(0, 256, shape).astype(np.uint8)).save(root / split / sub / name)


def test_folder_task_paired_and_unpaired(tmp_path):
  _write_folder(tmp_path, 'train', ['x.png', 'y.png', 'z.png'], ['x.png', 'y.png', 'z.png'])
  config = pix2pix_config.get_config('folder')
  config.translation.folder = str(tmp_path)
  pairs, labels = translation_data.build_split(config, 'train')
  assert pairs.shape == (3, 32, 32, 2) and not labels.any()
  a_of_y = np.asarray(Image.open(tmp_path / 'train' / 'A' / 'y.png').resize((32, 32),
                                                                            Image.BILINEAR))
  np.testing.assert_array_equal(pairs[1, ..., 0], a_of_y)   # sorted names: y is second
  _write_folder(tmp_path, 'train', [], ['w.png'])
  with pytest.raises(UserError, match='unmatched: w.png'):
    translation_data.build_split(config, 'train')
  config = cyclegan_config.get_config('folder')
  config.translation.folder, config.translation.channels = str(tmp_path), 3
  pairs, _ = translation_data.build_split(config, 'train')
  assert pairs.shape == (4, 32, 32, 6)                       # 3 A's cycled to B's 4
  with pytest.raises(UserError, match='missing image folder'):
    translation_data.build_split(config, 'test')


# ------------------------------------------------------------------ steps, data parallel

def _random_pairs(n, channels=1, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (n, 32, 32, 2 * channels)).astype(np.uint8)


@pytest.mark.parametrize('recipe', [pix2pix_config, cyclegan_config])
def test_one_device_and_four_devices_give_the_same_step(recipe):
  """The replay buffer is global (not per device), BatchNorm statistics are cross-device.

  Dropout masks are drawn per device (as in steps.py), so pix2pix's U-Net runs without
  dropout here; everything else must match. SGD, not the recipes' Adam: Adam turns the
  rounding noise of near-zero gradients into full lr-sized steps of either sign (seen on an
  AVX-512 machine: 1e-4 apart after 3 steps), SGD keeps the difference at the gradients'.
  At lr 1e-3 the three steps move every leaf by 8e-5 .. 3e-3 (well above the tolerance).
  """
  config = _small(recipe.get_config(), batch_size=8)
  config.g_optimizer = default.optimizer('sgd', 1e-3)
  config.d_optimizer = default.optimizer('sgd', 1e-3)
  config.translation.pool_size = 3 if config.model.name == 'cyclegan' else 0
  config.translation.dropout = 0.0
  pairs = _random_pairs(24)
  results = []
  for devices in (1, 4):
    task = tasks.build(config)
    mesh = parallel.make_mesh(devices)
    state = jax.device_put(task.init_state(jax.random.PRNGKey(0)), parallel.replicated(mesh))
    step = parallel.data_parallel(task.train_step, mesh)
    for i in range(3):  # the third step's buffer is full: swaps happen
      batch = {'image': pairs[None, 8 * i:8 * (i + 1)], 'label': np.zeros((1, 8), np.int32)}
      state, metrics = step(state, parallel.global_batch(batch, mesh))
    results.append(jax.device_get((state.g_params, state.d_params, state.pool, metrics)))
  flat1, flat4 = (jax.tree.leaves(r) for r in results)
  for x, y in zip(flat1, flat4):
    np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)


def _pix2pix_l1_curve(l1_weight, steps=10):
  """L1 per step of pix2pix fitting one fixed batch (target: the negative of the input)."""
  config = _small(pix2pix_config.get_config(), batch_size=8)
  # A larger G step than the recipe's 2e-4, so that ten steps on tiny nets move L1 clearly.
  config.g_optimizer = default.optimizer('adam', 1e-2, b1=0.5, b2=0.999)
  config.translation.l1_weight = l1_weight
  task = tasks.build(config)
  mesh = parallel.make_mesh(1)
  state = jax.device_put(task.init_state(jax.random.PRNGKey(0)), parallel.replicated(mesh))
  step = parallel.data_parallel(task.train_step, mesh)
  pairs = _random_pairs(8)
  pairs[..., 1] = 255 - pairs[..., 0]
  batch = parallel.global_batch({'image': pairs[None], 'label': np.zeros((1, 8), np.int32)}, mesh)
  l1 = []
  for _ in range(steps):
    state, metrics = step(state, batch)
    l1.append(float(metrics['l1']))
  return l1


def test_pix2pix_l1_term_drives_g_towards_the_targets():
  """With λ = 100 ten steps on one batch cut L1 clearly; with λ = 0 (GAN loss alone) they do not.

  Measured: λ = 100: 0.507 -> 0.351; λ = 0: 0.507 -> 0.637.
  """
  with_l1 = _pix2pix_l1_curve(100.0)
  without = _pix2pix_l1_curve(0.0)
  assert with_l1[-1] < 0.8 * with_l1[0], with_l1
  assert without[-1] > 0.9 * without[0], without
  assert with_l1[-1] < without[-1] - 0.05, (with_l1, without)


def test_cyclegan_learning_rate_decays_linearly_over_the_second_half():
  """The recipe's optimizers follow the schedule, step by step (SGD: update = -lr·grad)."""
  config = _small(cyclegan_config.get_config(), num_epochs=4)
  config.g_optimizer = default.optimizer('sgd', 2e-4)
  tx = tasks.build(config, steps_per_epoch=10).spec.g_tx  # 40 steps, decay over 20..40
  params = {'w': jnp.zeros(())}
  opt_state, lr = tx.init(params), []
  for _ in range(40):
    updates, opt_state = tx.update({'w': jnp.ones(())}, opt_state, params)
    lr.append(-float(updates['w']))
  np.testing.assert_allclose([lr[k] for k in (0, 19, 20, 30, 39)],
                             [2e-4, 2e-4, 2e-4, 1e-4, 1e-5], rtol=1e-5)


# ------------------------------------------------------------------------ through train.py

def _tiny(recipe: str) -> list[str]:
  return [f'--config=configs/{recipe}.py', '--config.allow_download=false',
          '--config.log_every_steps=2', '--config.batch_size=16',
          '--config.translation.g_base=8', '--config.translation.d_base=8',
          '--config.translation.res_blocks=1']


@pytest.mark.long('train, resume, eval.py, generate.py and a refused workdir, each a process: '
                  'the one end-to-end pass of each translation recipe')
@pytest.mark.parametrize('recipe, n, rows', [('pix2pix', 64, 3), ('cyclegan', 48, 6)])
def test_translation_recipe_trains_checkpoints_resumes_and_draws(tmp_path, fashion_dir,
                                                                 recipe, n, rows):
  workdir = tmp_path / recipe
  args = [*_tiny(recipe), f'--workdir={workdir}', f'--config.num_train_examples={n}']
  proc = run_script('train.py', *args, '--config.num_epochs=1')
  assert proc.returncode == 0, proc.stderr[-3000:]
  per_epoch = n // 16
  assert _checkpoint_steps(workdir) == [per_epoch]
  grid = Image.open(workdir / 'samples' / 'epoch_0001.png')
  assert grid.size == (10 * 34 + 2, rows * 34 + 2)  # 10 columns of 32x32 + 2-pixel borders
  assert glob.glob(str(workdir / 'events.out.tfevents.*'))

  proc = run_script('train.py', *args, '--config.num_epochs=2')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Resumed from' in proc.stderr
  assert _checkpoint_steps(workdir) == [per_epoch, 2 * per_epoch]

  # eval.py: the recipe's table, baselines first, the run last; generate.py refuses it.
  proc = run_script('eval.py', f'--workdir={workdir}', '--num_samples=300', '--format=json')
  assert proc.returncode == 0, proc.stderr[-3000:]
  import json
  rows = json.loads(proc.stdout)
  assert rows[-1]['run'] == str(workdir) and rows[-1]['step'] == 2 * per_epoch
  assert all(r['run'].startswith('baseline') for r in rows[:-1]) and len(rows) >= 2
  if recipe == 'pix2pix':
    assert rows[-1]['samples'] == 300
    identity, blank = rows[0], rows[1]
    assert identity['ssim'] < 0.5 and 0 < blank['l1'] < 1 and 0 < identity['l1'] < 1
    assert all(r['fid'] > 0 for r in rows)
  else:
    assert rows[0]['share_ab'] < 0.05 and rows[0]['share_ba'] < 0.05  # untranslated
    assert all(r['fid_ab'] > 0 and r['fid_ba'] > 0 for r in rows)
  proc = run_script('generate.py', f'--workdir={workdir}', '--labels=7',
                    f'--out={tmp_path / "x.png"}')
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert proc.returncode != 0 and len(errors) == 1 and 'translates images' in errors[0]

  # Another recipe's workdir is refused, and the checkpoints are left as they were.
  before = sorted(os.listdir(workdir / 'checkpoints'))
  other = 'cyclegan' if recipe == 'pix2pix' else 'pix2pix'
  proc = run_script('train.py', *_tiny(other), f'--workdir={workdir}',
                    f'--config.num_train_examples={n}')
  assert proc.returncode != 0
  assert 'different run' in proc.stderr
  assert sorted(os.listdir(workdir / 'checkpoints')) == before


def test_ssim_matches_tensorflow():
  tf = pytest.importorskip('tensorflow')
  from cgan_jax.evaluation import translation
  rs = np.random.RandomState(0)
  x = rs.rand(3, 32, 32, 1).astype(np.float32)
  y = np.clip(x + 0.2 * rs.randn(3, 32, 32, 1), 0, 1).astype(np.float32)
  ours = translation.ssim(x, y)
  theirs = tf.image.ssim(tf.constant(x), tf.constant(y), max_val=1.0).numpy()
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(translation.ssim(x, x), 1.0, rtol=1e-9)
  assert ours.max() < 0.9


def test_translation_bad_input_is_one_clear_error(tmp_path):
  for extra, message in (
      (['--config.translation.task=sketch'], 'unknown translation task'),
      (['--config.translation.image_size=28'], 'power of two'),
      (['--config.translation.task=folder', f'--config.translation.folder={tmp_path}/none'],
       'missing image folder'),
      (['--config.translation.class_a=Sneaker', '--config.translation.class_b=Sneaker'],
       'same class')):
    proc = run_script('train.py', *_tiny('cyclegan'), f'--workdir={tmp_path / "w"}', *extra)
    errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
    assert proc.returncode != 0 and len(errors) == 1 and message in errors[0], proc.stderr[-2000:]


def test_pix2pix_trains_on_a_folder_of_paired_images(tmp_path):
  names = [f'{i:03d}.png' for i in range(32)]
  _write_folder(tmp_path / 'data', 'train', names, names)
  _write_folder(tmp_path / 'data', 'test', names[:4], names[:4], seed=1)
  workdir = tmp_path / 'run'
  proc = run_script('train.py', '--config=configs/pix2pix.py:folder', f'--workdir={workdir}',
                    f'--config.translation.folder={tmp_path / "data"}',
                    '--config.translation.image_size=16', '--config.translation.g_base=8',
                    '--config.translation.d_base=8', '--config.batch_size=16',
                    '--config.num_epochs=1')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _checkpoint_steps(workdir) == [2]
  grid = Image.open(workdir / 'samples' / 'epoch_0001.png')
  assert grid.size == (4 * 18 + 2, 3 * 18 + 2)  # the 4 test pairs: input | output | target
