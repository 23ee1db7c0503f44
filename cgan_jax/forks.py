"""A forked train step, named by the config: the contract (docs/forking.md) and its checks.

`config.train_step` names the fork; nothing in cgan_jax/ is edited:
  'pkg.module'            a fork module: `make_train_step(fork_config, gan)` returns the step;
                          optional `FIELDS` (its config fields and their defaults, the one home
                          of `config.fork`), `validate(fork_config) -> [problem, ...]` and
                          `init_extra(gan, fork_config) -> pytree` (the fork's arrays, kept in
                          `GANState.extra`: saved, restored, shape-checked);
  'pkg.module:function'   a plain step function `(state, batch) -> (state, metrics)` (the
                          module's optional FIELDS / validate / init_extra apply as well).
The step runs per device under shard_map exactly as steps.train_step does (its contract in
steps.py). Readers of runs (eval.py, generate.py) never import the fork: they restore
`extra` as it was saved (checkpointing.Checkpointer.restore_state).
"""

import dataclasses
import importlib
import numbers
from types import ModuleType
from typing import Any, Callable

import jax
import ml_collections

from cgan_jax.errors import UserError

Step = Callable[[Any, dict[str, jax.Array]], tuple[Any, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Fork:
  """A resolved fork: its name (config.train_step), its config and its hooks."""
  name: str
  config: ml_collections.ConfigDict  # config.fork with FIELDS' defaults filled in
  step: Step | None  # the plain step ('module:function'), else built by make_train_step
  module: ModuleType

  def train_step(self, gan: Any) -> Step:
    """The step for `gan`, wrapped so that a state it changes in shape is one error line."""
    if self.step is not None:
      return checked(self.step, self.name)
    make = getattr(self.module, 'make_train_step', None)
    if not callable(make):
      raise UserError(f"fork module {self.module.__name__!r} has no make_train_step(fork_config, "
                      f"gan) (or name a step function: train_step='{self.name}:train_step')")
    try:
      step = make(self.config, gan)
    except ValueError as e:  # the fork refuses this GAN (e.g. a schedule it cannot follow)
      raise UserError(f'train_step {self.name!r}: {e}') from e
    return checked(step, self.name)

  def init_extra(self, gan: Any) -> Any:
    """The fork's arrays for a fresh state (`{}` without an init_extra)."""
    init = getattr(self.module, 'init_extra', None)
    return {} if init is None else init(gan, self.config)


def label(config: ml_collections.ConfigDict) -> str:
  """' + <fork module>' for a forked step's run, '' for the shared step: appended to the
  model's name in eval tables."""
  module = config.get('train_step', '').partition(':')[0]
  return f' + {module}' if module else ''


def _import(module: str) -> ModuleType:
  try:
    return importlib.import_module(module)
  except Exception as e:  # noqa: BLE001 - an import runs the module: anything can fail
    raise UserError(f'cannot import train_step module {module!r}: {type(e).__name__}: {e}') \
        from e


def _same_kind(value: Any, default: Any) -> bool:
  if isinstance(default, bool) or isinstance(value, bool):
    return isinstance(value, bool) and isinstance(default, bool)
  if isinstance(default, numbers.Real):
    return isinstance(value, numbers.Real)
  return isinstance(value, type(default))


def fork_config(module: ModuleType, given: Any) -> ml_collections.ConfigDict:
  """config.fork checked against the module's FIELDS (unknown names and wrong types refused,
  absent ones defaulted) and its validate(); one UserError naming every problem."""
  values = given.to_dict() if isinstance(given, ml_collections.ConfigDict) else dict(given or {})
  fields = getattr(module, 'FIELDS', None)
  problems = []
  if fields is not None:
    for name, value in values.items():
      if name not in fields:
        problems.append(f'fork.{name} is not a field of {module.__name__} (its fields: '
                        f'{", ".join(sorted(fields)) or "none"})')
      elif not _same_kind(value, fields[name]):
        problems.append(f'fork.{name} must be a {type(fields[name]).__name__}, got {value!r}')
    values = {**fields, **values}
  config = ml_collections.ConfigDict(values)
  validate = getattr(module, 'validate', None)
  if not problems and validate is not None:
    problems = [f'fork.{p}' for p in validate(config)]
  if problems:
    raise UserError(f'invalid config: {"; ".join(problems)}')
  return config


def load(spec: str, given: Any = None) -> Fork:
  """config.train_step ('module' or 'module:function') and config.fork -> a Fork."""
  module_name, sep, function = spec.partition(':')
  parts = module_name.split('.')
  if not all(p.isidentifier() for p in parts) or (sep and not function.isidentifier()):
    raise UserError("train_step must be 'module' (a fork module) or 'module:function' (e.g. "
                    f'my_steps:train_step), got {spec!r}')
  module = _import(module_name)
  step = None
  if sep:
    step = getattr(module, function, None)
    if not callable(step):
      raise UserError(f'module {module_name!r} has no function {function!r} '
                      f'(train_step={spec!r})')
  return Fork(spec, fork_config(module, given), step, module)


def _key(entry: Any) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def leaves(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """{'extra.ema_real': (shape, dtype name), ...} of a pytree of arrays (or of anything with
  .shape and .dtype, such as ShapeDtypeStructs and orbax's array metadata)."""
  return {'.'.join(_key(k) for k in path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_difference(have: Any, want: Any) -> str:
  """What `have` has that `want` lacks, lacks, or holds in another shape or dtype, by key
  path ('' when nothing differs)."""
  a, b = leaves(have), leaves(want)
  parts = []
  if set(a) - set(b):
    parts.append('has ' + ', '.join(sorted(set(a) - set(b))))
  if set(b) - set(a):
    parts.append('lacks ' + ', '.join(sorted(set(b) - set(a))))
  changed = [f'{k} {a[k][1]}{list(a[k][0])} (expected {b[k][1]}{list(b[k][0])})'
             for k in sorted(set(a) & set(b)) if a[k] != b[k]]
  if changed:
    parts.append('changes ' + ', '.join(changed))
  return '; '.join(parts)


def checked(step: Step, name: str) -> Step:
  """`step` with a trace-time check: the state it returns has the tree, shapes and dtypes of
  the state it got (the checkpoint and the device loop's carry need that)."""
  def run(state, batch):
    new, metrics = step(state, batch)
    if jax.tree.structure(new) != jax.tree.structure(state) or leaves(new) != leaves(state):
      raise UserError(f'the train step {name!r} returned a state that differs from the one it '
                      f'got: it {tree_difference(new, state) or "changes its tree"}; a fork '
                      'declares its arrays in init_extra (docs/forking.md)')
    return new, metrics
  return run
