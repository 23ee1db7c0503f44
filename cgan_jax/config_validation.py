"""Every field of a training config checked up front, before any data is read or file written.

`validate(config)` raises one UserError naming every bad field ("log_every_steps must be an
integer >= 1, got 0; ..."), so a typo costs seconds, not a crash an hour into a run. Names
(dataset, loss, optimizer) are resolved right after by `tasks.build`, which lists the
known ones. A top-level field this module does not know is refused (a fork's own fields
live in `config.fork`, checked by cgan_jax/forks.py); unknown keys inside a group are logged.
"""

import math
import numbers
from typing import Any, Callable

import ml_collections
from absl import logging

from cgan_jax.errors import UserError

Check = Callable[[Any], str | None]  # a value -> what is wrong with it, or None


def integer(least: int, most: int | None = None, note: str = '') -> Check:
  """An int (not a bool) in [least, most]; `note` says what the small values mean."""
  def check(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
      return f'must be an integer, got {v!r}'
    if v < least or (most is not None and v > most):
      span = f'>= {least}' if most is None else f'in {least}..{most}'
      return f'must be an integer {span}{note}, got {v}'
    return None
  return check


def real(least: float, most: float | None = None, open_low: bool = False,
         open_high: bool = False) -> Check:
  """A finite number in the interval [least, most] (ends open where asked)."""
  def check(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
      return f'must be a finite number, got {v!r}'
    low_bad = v <= least if open_low else v < least
    high_bad = most is not None and (v >= most if open_high else v > most)
    if low_bad or high_bad:
      lo, hi = '(' if open_low else '[', ')' if open_high else ']'
      span = f'> {least:g}' if open_low and most is None else (
          f'>= {least:g}' if most is None else f'in {lo}{least:g}, {most:g}{hi}')
      return f'must be {span}, got {v!r}'
    return None
  return check


def one_of(*choices: Any) -> Check:
  def check(v):
    return None if v in choices else f'must be one of {", ".join(map(repr, choices))}, got {v!r}'
  return check


def of_type(kind: type, what: str) -> Check:
  def check(v):
    return None if isinstance(v, kind) else f'must be {what}, got {v!r}'
  return check


TEXT = of_type(str, 'a string')
FLAG = of_type(bool, 'true or false')
POSITIVE = real(0.0, open_low=True)
NON_NEGATIVE = real(0.0)
UNIT = real(0.0, 1.0, open_high=True)  # Adam betas, decays, momentum, dropout: [0, 1)

FIELDS: dict[str, Check] = {
    'model': lambda v: None,  # a group: checked by cgan_jax.models.problems
    'dataset': TEXT, 'loss': TEXT,
    'num_train_examples': integer(0, note=' (0: the whole split)'),
    'z_dim': integer(1),
    'batch_size': integer(1),
    'n_critic': integer(1), 'g_steps': integer(1),
    'clip_critic': NON_NEGATIVE,
    'gradient_penalty': NON_NEGATIVE,
    'seed': integer(0, 2**31 - 1),
    'num_epochs': integer(1),
    'data_dir': TEXT, 'allow_download': FLAG,
    'pipeline': one_of('auto', 'tf.data', 'numpy', 'device'),
    'steps_per_dispatch': integer(0, note=' (0: auto, by backend)'),
    'dtype': one_of('float32', 'bfloat16'),
    'num_devices': integer(0, note=' (0: all local devices)'),
    'dispatch_ahead': integer(0),
    'log_every_steps': integer(1),
    'checkpoint_every_steps': integer(0, note=' (0: at the end of each epoch only)'),
    'keep_checkpoints': integer(1),
    'sample_every_epochs': integer(1),
    'eval_every_steps': integer(0, note=' (0: off)'),
    'eval_num_samples': integer(2),
    'profile_steps': integer(0, note=' (0: off)'),
}

# Fields with a default in config_defaults.py that a config built without it (an older
# checkpoint's, upgraded by config_defaults.upgrade; a hand-made one) may lack. The model's
# options are in config.model (cgan_jax.models.FAMILIES).
OPTIONAL_FIELDS: dict[str, Check] = {
    'sample_fake_labels': FLAG, 'fresh_g_inputs': FLAG, 'split_d_step': FLAG,
    'simultaneous_updates': FLAG,
    'critic_warmup_iters': integer(0, note=' (0: no warm-up; WGAN paper: 100)'),
    'critic_warmup_first': integer(0), 'critic_warmup_every': integer(0, note=' (0: never)'),
    'lr_decay_rate': real(0.0, 1.0, open_low=True),
    'lr_decay_every_steps': integer(1),
    'ema_decay': UNIT, 'ema_start_step': integer(0),
    'diffaugment': TEXT,
    'train_step': TEXT,  # a forked step, 'module' or 'module:function' (forks.py); its own
    # fields, the group `fork`, are checked by forks.fork_config against the fork's FIELDS
}

# Optimizer fields (cgan_jax.state.OPTIMIZERS' keyword arguments) that have a valid range.
OPTIMIZER_FIELDS: dict[str, Check] = {
    'name': TEXT, 'learning_rate': POSITIVE,
    'b1': UNIT, 'b2': UNIT, 'eps': POSITIVE, 'eps_root': NON_NEGATIVE,
    'decay': UNIT, 'initial_scale': NON_NEGATIVE, 'centered': FLAG, 'nesterov': FLAG,
    'eps_in_sqrt': FLAG,
    'momentum': lambda v: None if v is None else UNIT(v),
}

TRANSLATION_FIELDS: dict[str, Check] = {
    'task': TEXT, 'class_a': TEXT, 'class_b': TEXT, 'folder': TEXT, 'paired': FLAG,
    'channels': one_of(1, 3),
    'image_size': integer(8),
    'g_base': integer(1), 'd_base': integer(1), 'd_layers': integer(1),
    'norm': one_of('batch', 'instance'),
    'dropout': UNIT,
    'res_blocks': integer(0),
    'l1_weight': NON_NEGATIVE, 'cycle_weight': NON_NEGATIVE, 'identity_weight': NON_NEGATIVE,
    'pool_size': integer(0),
    'lr_decay_from': real(0.0, 1.0),
}


# The groups of a training config, each checked by its own rules (fork: forks.fork_config).
GROUPS = ('model', 'g_optimizer', 'd_optimizer', 'translation', 'fork')


def _check_group(group: Any, rules: dict[str, Check], prefix: str,
                 required: tuple[str, ...] = (), top: bool = False) -> list[str]:
  """Problems of one (sub)config against its rules. Unknown fields at the top (`top`) are
  refused (a typo, or a fork's field outside config.fork); in a group (an optimizer's extra
  keyword, say) they are logged."""
  values = group.to_dict() if isinstance(group, ml_collections.ConfigDict) else group
  if not isinstance(values, dict):
    return [f'{prefix.rstrip(".")} must be a config group, got {group!r}']
  problems = [f'{prefix}{name} is missing' for name in required if name not in values]
  for name, value in values.items():
    if name in rules:
      problem = rules[name](value)
      if problem:
        problems.append(f'{prefix}{name} {problem}')
    elif top and name not in GROUPS:
      problems.append(f'{name} is not a field of the training config (a forked step\'s own '
                      'fields go in config.fork: docs/forking.md)')
    elif not isinstance(value, dict):
      logging.warning('config field %s%s is not one this trainer knows; not checked',
                      prefix, name)
  return problems


def _cross_field(config: ml_collections.ConfigDict) -> list[str]:
  """Constraints between fields (only once each field is valid on its own)."""
  problems = []
  if config.get('fork') and not config.get('train_step'):
    problems.append('fork (a forked step\'s fields) is set but train_step names no fork')
  warm = config.get('critic_warmup_iters', 0)
  if warm and warm % config.n_critic:
    problems.append(f'critic_warmup_iters {warm} must be a multiple of n_critic '
                    f'{config.n_critic} (one step makes n_critic critic updates)')
  per_step = config.batch_size * config.n_critic
  if 0 < config.num_train_examples < per_step:
    problems.append(f'num_train_examples {config.num_train_examples} is fewer than one step '
                    f'needs (batch_size {config.batch_size} x n_critic {config.n_critic} = '
                    f'{per_step})')
  return problems


def problems(config: ml_collections.ConfigDict) -> list[str]:
  """Everything wrong with `config`, one phrase per bad field (empty: all valid)."""
  found = _check_group(config, {**FIELDS, **OPTIONAL_FIELDS}, '', required=tuple(FIELDS),
                       top=True)
  if 'model' in config:
    from cgan_jax import models  # the registry knows each family's options
    found += models.problems(config.model)
  for name in ('g_optimizer', 'd_optimizer'):
    if name in config:
      found += _check_group(config[name], OPTIMIZER_FIELDS, f'{name}.',
                            required=('name', 'learning_rate'))
  if 'translation' in config:
    found += _check_group(config.translation, TRANSLATION_FIELDS, 'translation.')
  return found or _cross_field(config)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises one UserError naming every bad field of `config`."""
  found = problems(config)
  if found:
    raise UserError(f'invalid config: {"; ".join(found)}')
