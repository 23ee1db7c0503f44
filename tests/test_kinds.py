"""The kind registry (cgan_jax/kinds/): a third kind is one class plus one entry in KINDS, and
the trainer's build, eval.py's tables and plots and generate.py's refusal all reach it."""

import ml_collections
import pytest

from cgan_jax import kinds, models, sampling, tasks
from cgan_jax.errors import UserError
from cgan_jax.evaluation import evaluator, plots, tables
from configs import default


class ThirdTask:
  """A stand-in kind: nothing outside its class and its registry entry knows it."""

  kind = 'third'
  table = 'third'
  table_rank = 0
  schema = (('run', 'run', tables.text), ('score', 'score ↑', tables.fixed(2)))
  plotted = (('score', 'score ↑'),)

  def __init__(self, config, axis_name=None, steps_per_epoch=1):
    self.config = config

  @staticmethod
  def check_drawable(workdir, config):
    raise UserError(f'{workdir}: a third-kind run draws nothing')

  @staticmethod
  def caption(options):
    return f'third kind, seed {options.seed}'

  @staticmethod
  def evaluate(targets, options, reference):
    return [{'run': workdir, 'step': 1, 'score': 0.5} for workdir, _, _ in targets]


@pytest.fixture
def third(monkeypatch):
  monkeypatch.setitem(kinds.KINDS, 'third', f'{__name__}:ThirdTask')
  config = default.get_config()
  config.model = ml_collections.ConfigDict({'name': 'third'})
  return config


def test_every_registered_kind_has_its_members():
  for kind in kinds.registered():
    assert kinds.by_table(kind.table) is kind
    for member in ('kind', 'table_rank', 'schema', 'plotted', 'check_drawable', 'caption',
                   'evaluate', 'train_step', 'load', 'init_state', 'sample_grid'):
      assert hasattr(kind, member), (kind, member)


def test_a_third_kind_is_one_class_and_one_registry_entry(third, monkeypatch):
  assert models.problems(third.model) == [] and 'third' in models.known_families()
  assert kinds.of(third) is ThirdTask and tasks.kind(third) == 'third'
  assert isinstance(tasks.build(third), ThirdTask)
  assert kinds.by_table('third') is ThirdTask

  monkeypatch.setattr(evaluator, 'run_config', lambda workdir, step: third)
  by_kind = evaluator.evaluate(['runs/x'], evaluator.Options())
  assert by_kind == {'third': [{'run': 'runs/x', 'step': 1, 'score': 0.5}]}
  assert [p.title for p in plots.panels(by_kind)] == ['score ↑']

  class Meta:  # a checkpoint whose config is the third kind's
    def __init__(self, *args, **kwargs):
      pass

    def restore_meta(self, step):
      return {'config': third.to_dict()}

  monkeypatch.setattr(sampling.checkpointing, 'Checkpointer', Meta)
  with pytest.raises(UserError, match='draws nothing'):
    sampling.load('runs/x')
