"""Every config field is checked up front (cgan_jax/config_validation.py), in-process."""

import glob
import json
import importlib
import os

import ml_collections
import pytest

from cgan_jax import config_validation
from cgan_jax.errors import UserError
from configs.default import RUNTIME_FIELDS
from conftest import ROOT
from configs import cgan, pix2pix


def _recipes() -> list[str]:
  names = [os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))]
  return sorted(n for n in names if n != '__init__')


@pytest.mark.parametrize('recipe', _recipes())
def test_every_recipe_is_valid(recipe):
  assert config_validation.problems(importlib.import_module(f'configs.{recipe}').get_config()) == []


BAD = [
    ('log_every_steps', 0, 'log_every_steps must be an integer >= 1, got 0'),
    ('checkpoint_every_steps', -5, 'checkpoint_every_steps must be an integer >= 0 (0: at the'),
    ('eval_every_steps', -1, 'eval_every_steps must be an integer >= 0 (0: off)'),
    ('sample_every_epochs', 0, 'sample_every_epochs must be an integer >= 1'),
    ('keep_checkpoints', 0, 'keep_checkpoints must be an integer >= 1'),
    ('batch_size', 0, 'batch_size must be an integer >= 1'),
    ('num_epochs', -1, 'num_epochs must be an integer >= 1'),
    ('z_dim', 0, 'z_dim must be an integer >= 1'),
    ('n_critic', 0, 'n_critic must be an integer >= 1'),
    ('g_steps', 0, 'g_steps must be an integer >= 1'),
    ('num_train_examples', -1, 'num_train_examples must be an integer >= 0'),
    ('num_devices', -2, 'num_devices must be an integer >= 0'),
    ('steps_per_dispatch', -1, 'steps_per_dispatch must be an integer >= 0 (0: auto'),
    ('dtype', 'float16', "dtype must be one of 'float32', 'bfloat16'"),
    ('eval_num_samples', 1, 'eval_num_samples must be an integer >= 2'),
    ('seed', -1, 'seed must be an integer in 0..2147483647'),
    ('seed', True, 'seed must be an integer, got True'),
    ('clip_critic', -0.01, 'clip_critic must be >= 0'),
    ('gradient_penalty', float('inf'), 'gradient_penalty must be a finite number, got inf'),
    ('pipeline', 'tfdata', "pipeline must be one of 'auto', 'tf.data', 'numpy', 'device'"),
    ('allow_download', 'yes', 'allow_download must be true or false'),
]


@pytest.mark.parametrize('field,value,message', BAD)
def test_a_bad_top_level_field_is_named(field, value, message):
  values = cgan.get_config().to_dict()
  values[field] = value  # any type: a config file can set anything
  c = ml_collections.ConfigDict(values)
  with pytest.raises(UserError, match='^invalid config: ') as e:
    config_validation.validate(c)
  assert message in str(e.value) and ';' not in str(e.value)  # this field alone


@pytest.mark.parametrize('field,value,message', [
    ('learning_rate', 0.0, 'g_optimizer.learning_rate must be > 0, got 0.0'),
    ('learning_rate', -1e-3, 'g_optimizer.learning_rate must be > 0'),
    ('learning_rate', float('nan'), 'g_optimizer.learning_rate must be a finite number, got nan'),
    ('b1', 1.0, 'g_optimizer.b1 must be in [0, 1), got 1.0'),
    ('b2', -0.1, 'g_optimizer.b2 must be in [0, 1)'),
])
def test_a_bad_optimizer_field_is_named(field, value, message):
  c = cgan.get_config()
  c.g_optimizer[field] = value
  assert any(message in p for p in config_validation.problems(c))


@pytest.mark.parametrize('field,value,message', [
    ('channels', 2, 'translation.channels must be one of 1, 3, got 2'),
    ('l1_weight', -1.0, 'translation.l1_weight must be >= 0'),
    ('dropout', 1.0, 'translation.dropout must be in [0, 1)'),
    ('lr_decay_from', 1.5, 'translation.lr_decay_from must be in [0, 1]'),
    ('norm', 'group', "translation.norm must be one of 'batch', 'instance'"),
])
def test_a_bad_translation_field_is_named(field, value, message):
  c = pix2pix.get_config()
  c.translation[field] = value
  assert any(message in p for p in config_validation.problems(c)), config_validation.problems(c)


def test_every_bad_field_is_listed_in_one_line():
  c = cgan.get_config()
  c.log_every_steps, c.keep_checkpoints, c.d_optimizer.learning_rate = 0, 0, -1.0
  found = config_validation.problems(c)
  assert len(found) == 3 and all('\n' not in p for p in found)


def test_fewer_examples_than_one_step():
  c = cgan.get_config()
  c.num_train_examples, c.n_critic = 100, 5
  assert config_validation.problems(c) == [
      'num_train_examples 100 is fewer than one step needs (batch_size 64 x n_critic 5 = 320)']


def test_an_unknown_top_level_field_is_refused_naming_config_fork():
  c = cgan.get_config()
  assert config_validation.problems(c) == []
  c.my_new_field = 3
  assert config_validation.problems(c) == [
      'my_new_field is not a field of the training config (a forked step\'s own fields go in '
      'config.fork: docs/forking.md)']


def test_an_unknown_optimizer_keyword_is_logged_not_refused(monkeypatch):
  logged = []
  monkeypatch.setattr(config_validation.logging, 'warning',
                      lambda message, *args: logged.append(message % args))
  c = cgan.get_config()
  c.d_optimizer.mu_dtype = 'float32'  # an optax.adam keyword the rules do not list
  assert config_validation.problems(c) == []
  assert logged == ['config field d_optimizer.mu_dtype is not one this trainer knows; not '
                    'checked']


# Every recipe's config as written before models took options (config.model a registry name,
# model options at the top level): dumped from the recipes at 56ccd0b's successor, 2026-12-03.
with open(os.path.join(ROOT, 'tests', 'data', 'configs_before_model_options.json')) as _f:
  LEGACY = json.load(_f)


@pytest.mark.parametrize('recipe', sorted(LEGACY))
def test_a_config_from_before_model_options_upgrades_to_the_recipe_today(recipe):
  from cgan_jax import config_defaults, models, trainer
  old = LEGACY[recipe]
  assert isinstance(old['model'], str)
  today = importlib.import_module(f'configs.{recipe}').get_config()
  upgraded = config_defaults.upgrade(old)
  # Equal but for runtime fields (added since, like dispatch_ahead), so a checkpoint written
  # then resumes under today's recipe; the fields added to the defaults since (ema_decay,
  # train_step, ...) come in at their defaults.
  trainer.check_same_run({'config': upgraded}, today, recipe)
  assert {k: v for k, v in upgraded.items() if k not in RUNTIME_FIELDS} == {
      k: v for k, v in today.to_dict().items() if k not in RUNTIME_FIELDS}
  assert set(today.to_dict()) - set(old) - set(RUNTIME_FIELDS)  # the test has work to do
  assert models.label(upgraded['model']) == old['model']


# Recipes added after models took options: no checkpoint of theirs has the old form.
AFTER_MODEL_OPTIONS = {'cgan_projection_infogan'}


def test_the_legacy_dump_covers_every_recipe():
  assert set(LEGACY) == set(_recipes()) - {'default'} - AFTER_MODEL_OPTIONS
  assert not AFTER_MODEL_OPTIONS & set(LEGACY)


@pytest.mark.parametrize('recipe', sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(ROOT, 'configs', '*.py')) if not p.endswith(('__init__.py', 'default.py'))))
def test_every_documented_field_is_on_every_recipe(recipe):
  """--config.diffaugment=..., --config.ema_decay=... work on any recipe: each optional field
  has its one home, with its default, in cgan_jax/config_defaults.py."""
  config = importlib.import_module(f'configs.{recipe}').get_config()
  assert set(config_validation.OPTIONAL_FIELDS) <= set(config)
