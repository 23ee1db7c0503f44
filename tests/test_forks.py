"""The fork contract (cgan_jax/forks.py, docs/forking.md) through the two example forks that
live in examples/: R1 (a config field, no state) and LeCam (EMAs carried in GANState.extra):
fields checked and overridable, the regulariser reaching D's loss, the state's arrays saved,
restored bit-exactly (device feed), read by eval.py and generate.py without the fork."""

import os
import re
import shutil
import sys

import jax
import ml_collections
import numpy as np
import pytest

from cgan_jax import forks, parallel, sampling, steps, tasks
from cgan_jax.errors import UserError
from conftest import ROOT, TINY, run_script
from configs import default
from examples.lecam import config as lecam_config
from examples.r1 import config as r1_config


def _task(get_config, **fork):
  """The example's config on the MLP CGAN (fast), with fork fields set."""
  config = get_config()
  config.model = default.model('mlp', conditioning='concat')
  config.fork.update(fork)
  return tasks.GanTask(config)


def _batch(seed):
  rs = np.random.RandomState(seed)
  return {'image': rs.randint(0, 256, (1, 64, 28, 28, 1)).astype(np.uint8),
          'label': rs.randint(0, 10, (1, 64)).astype(np.int32)}


def _train(task, num_steps, step_fn=None):
  mesh = parallel.make_mesh(1)
  state = jax.device_put(task.init_state(jax.random.PRNGKey(0)), parallel.replicated(mesh))
  fn = parallel.data_parallel(step_fn or task.train_step, mesh)
  history = []
  for i in range(num_steps):
    state, metrics = fn(state, parallel.global_batch(_batch(i), mesh))
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


def _same(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_r1_gamma_reaches_d_loss_and_zero_is_the_shared_step():
  shared, _ = _train(_task(r1_config.get_config), 2, steps.train_step)
  off, _ = _train(_task(r1_config.get_config, gamma=0.0), 2)
  assert _same(off, shared)  # the hook itself changes nothing
  _, (m0,) = _train(_task(r1_config.get_config, gamma=0.0), 1)
  on, (m10,) = _train(_task(r1_config.get_config, gamma=10.0), 1)
  assert m10['r1'] > 0
  # The same first D forward: the losses differ by exactly the penalty, (gamma / 2) * r1.
  np.testing.assert_allclose(m10['d_loss'] - m0['d_loss'], 5.0 * m10['r1'], rtol=1e-4)
  assert not _same(on.d_params, shared.d_params)


def test_fork_fields_are_checked_and_overridable_through_results_py():
  with pytest.raises(UserError, match=r'fork\.gamma must be >= 0, got -1\.0'):
    _task(r1_config.get_config, gamma=-1.0).train_step
  config = r1_config.get_config()
  config.fork.gama = 1.0  # a typo
  with pytest.raises(UserError, match=r"fork\.gama is not a field of examples\.r1\.step"):
    tasks.GanTask(config).train_step
  config = lecam_config.get_config()
  config.fork = ml_collections.ConfigDict({'weight': 0.3, 'decay': 'slow'})  # a config file's
  with pytest.raises(UserError, match=r"fork\.decay must be a float, got 'slow'"):
    tasks.GanTask(config).train_step
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  import results
  config = results.load_recipe('cgan_r1', ['fork.gamma=2.5'])
  assert tasks.GanTask(config).fork.config.gamma == 2.5


def test_lecam_carries_its_emas_in_the_state():
  task = _task(lecam_config.get_config, decay=0.5)
  state, history = _train(task, 2)
  ema_real = 0.5 * (0.5 * history[0]['lecam_d_real']) + 0.5 * history[1]['lecam_d_real']
  ema_fake = 0.5 * (0.5 * history[0]['lecam_d_fake']) + 0.5 * history[1]['lecam_d_fake']
  np.testing.assert_allclose(state.extra['ema_real'], ema_real, rtol=1e-6)
  np.testing.assert_allclose(state.extra['ema_fake'], ema_fake, rtol=1e-6)
  assert history[1]['lecam'] > 0 and state.extra['ema_real'] != 0


def test_a_step_that_changes_the_state_is_one_error_naming_the_keys():
  def lazy(state, batch):  # state added on the fly, not declared in init_extra
    new, metrics = steps.train_step(state, batch)
    return new.replace(extra={'ema': metrics['d_loss']}), metrics
  task = _task(r1_config.get_config)
  with pytest.raises(UserError, match=r"returned a state that differs .* it has extra\.ema"):
    _train(task, 1, forks.checked(lazy, 'lazy'))


LECAM_FORK = os.path.join(ROOT, 'examples', 'lecam', 'step.py')
CONFIG = '''
import ml_collections
from configs import cgan_mlp_concat

def get_config():
  c = cgan_mlp_concat.get_config()
  c.train_step = 'my_lecam'
  c.fork = ml_collections.ConfigDict({'weight': 0.3, 'decay': 0.9})
  return c
'''


@pytest.mark.long('four train.py runs, eval.py and generate.py: resume needs them all')
def test_lecam_resumes_bit_exactly_and_readers_never_import_it(tmp_path, fashion_dir):
  """LeCam copied out of the repository as `my_lecam` (on PYTHONPATH only while training):
  1 + 1 epochs == 2 epochs with the device feed, EMAs included; eval.py and generate.py read
  the run without the module; a changed init_extra is refused naming the keys."""
  shutil.copy(LECAM_FORK, tmp_path / 'my_lecam.py')
  (tmp_path / 'my_lecam_recipe.py').write_text(CONFIG)
  env = {'PYTHONPATH': str(tmp_path)}
  args = (f'--config={tmp_path / "my_lecam_recipe.py"}', '--config.pipeline=device',
          '--config.steps_per_dispatch=2', *TINY)

  def train(workdir, epochs):
    r = run_script('train.py', *args, f'--workdir={workdir}', f'--config.num_epochs={epochs}',
                   env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r
  train(tmp_path / 'straight', 2)
  train(tmp_path / 'resumed', 1)
  assert 'Resumed from' in train(tmp_path / 'resumed', 2).stderr
  _, a = sampling.load(str(tmp_path / 'straight'))
  _, b = sampling.load(str(tmp_path / 'resumed'))
  assert int(a.step) == int(b.step) == 8 and set(a.extra) == {'ema_real', 'ema_fake'}
  assert float(a.extra['ema_real']) != 0
  assert _same(a, b) and _same(a.extra, b.extra)

  r = run_script('eval.py', f'--workdir={tmp_path / "straight"}', '--num_samples=200',
                 '--features=classifier', '--reference=false')
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'mlp_cgan_concat + my_lecam' in r.stdout
  r = run_script('generate.py', f'--workdir={tmp_path / "straight"}', '--labels=7',
                 f'--out={tmp_path / "sneaker.png"}')
  assert r.returncode == 0 and (tmp_path / 'sneaker.png').exists(), r.stderr[-3000:]

  # The fork edited: its EMAs now vectors. Resuming the old run is refused, naming them.
  fork = (tmp_path / 'my_lecam.py').read_text()
  (tmp_path / 'my_lecam.py').write_text(fork.replace('jnp.zeros((), jnp.float32)',
                                                     'jnp.zeros((2,), jnp.float32)'))
  r = run_script('train.py', *args, f'--workdir={tmp_path / "straight"}',
                 '--config.num_epochs=3', env=env)
  errors = [line for line in r.stderr.splitlines() if line.startswith('error:')]
  assert r.returncode == 2 and len(errors) == 1, r.stderr[-3000:]
  assert re.search(r'changes extra\.ema_fake float32\[\] \(expected float32\[2\]\), '
                   r'extra\.ema_real', errors[0]), errors[0]
