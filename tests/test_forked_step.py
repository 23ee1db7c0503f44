"""A forked train step chosen by the config (`config.train_step = 'module:function'`): a user's
own module and config file, outside the package, train through train.py unchanged; bad names
are one error line."""

import os
import re
import sys
import textwrap

import pytest

from cgan_jax import forks, steps, tasks
from cgan_jax.errors import UserError
from conftest import TINY, run_script

FORK = '''
"""A fork of the shared step: the same update, and one metric of its own."""
import jax.numpy as jnp
from cgan_jax import steps

def train_step(state, batch):
  state, metrics = steps.train_step(state, batch)
  return state, {**metrics, 'fork_marker': jnp.float32(7.0)}
'''

CONFIG = '''
from configs import cgan_mlp_concat

def get_config():
  c = cgan_mlp_concat.get_config()
  c.train_step = 'my_fork:train_step'
  return c
'''


def test_the_configs_forked_step_trains_the_run(tmp_path, fashion_dir):
  (tmp_path / 'my_fork.py').write_text(FORK)
  (tmp_path / 'my_recipe.py').write_text(CONFIG)
  workdir = tmp_path / 'run'
  env = {'PYTHONPATH': str(tmp_path)}
  r = run_script('train.py', f'--config={tmp_path / "my_recipe.py"}', f'--workdir={workdir}',
                 '--config.num_epochs=1', '--config.pipeline=numpy', *TINY, env=env)
  assert r.returncode == 0, r.stderr[-3000:]
  logged = r.stderr + (workdir / 'train.log').read_text()
  assert 'fork_marker 7.0000' in logged, logged[-3000:]  # the fork's metric: its step ran
  assert os.path.exists(workdir / 'checkpoints' / '4')


def test_no_fork_is_the_shared_step_and_a_named_fork_is_imported_only_to_train(tmp_path,
                                                                            monkeypatch):
  from configs import cgan_mlp_concat
  assert tasks.GanTask(cgan_mlp_concat.get_config()).train_step is steps.train_step
  (tmp_path / 'fork_probe_xq.py').write_text(FORK)
  monkeypatch.syspath_prepend(str(tmp_path))
  config = cgan_mlp_concat.get_config()
  config.train_step = 'fork_probe_xq:train_step'
  task = tasks.GanTask(config)  # what eval.py's checks build: no import yet
  assert 'fork_probe_xq' not in sys.modules
  assert task.train_step is not steps.train_step and 'fork_probe_xq' in sys.modules


@pytest.mark.parametrize('spec,message', [
    ('my_fork.train_step:', "must be 'module' (a fork module) or 'module:function'"),
    ('json:', "must be 'module' (a fork module) or 'module:function'"),
    ('no_such_module_xq:train_step', "cannot import train_step module 'no_such_module_xq'"),
    ('no_such_module_xq', "cannot import train_step module 'no_such_module_xq'"),
    ('json:no_such_function', "module 'json' has no function 'no_such_function'"),
])
def test_bad_train_step_is_one_error(spec, message):
  with pytest.raises(UserError, match=re.escape(message)):
    forks.load(spec)


def test_bad_train_step_through_train_py_is_one_error_line(tmp_path, fashion_dir):
  (tmp_path / 'my_recipe.py').write_text(textwrap.dedent(CONFIG).replace(
      'my_fork:train_step', 'my_fork_absent:train_step'))
  r = run_script('train.py', f'--config={tmp_path / "my_recipe.py"}',
                 f'--workdir={tmp_path / "run"}', '--config.pipeline=numpy', *TINY)
  assert r.returncode != 0
  errors = [line for line in r.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and "cannot import train_step module 'my_fork_absent'" in errors[0], \
      r.stderr[-2000:]
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')
