"""Draws the classes you ask for from a trained workdir's latest checkpoint.

  python generate.py --workdir=runs/cgan --labels=7,7,1,9 --out=seven.png
"""

from absl import app, flags

from cgan_jax import cli
from cgan_jax.errors import UserError

_WORKDIR = flags.DEFINE_string('workdir', None, 'A train.py workdir.', required=True)
_LABELS = flags.DEFINE_string('labels', '0,1,2,3,4,5,6,7,8,9',
                              'Comma-separated class labels, one image each.')
_OUT = flags.DEFINE_string('out', 'samples.png', 'Output PNG path.')
_SEED = flags.DEFINE_integer('seed', 0, 'Noise seed; the same seed draws the same images.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
_COLUMNS = flags.DEFINE_integer('columns', 10, 'Images per row of the output grid.')


def parse_labels(text: str) -> list[int]:
  """'7,7,1' -> [7, 7, 1], refusing anything but comma-separated integers."""
  labels = []
  for part in text.split(','):
    try:
      labels.append(int(part.strip()))
    except ValueError:
      raise UserError(f'--labels must be comma-separated integers, got {part.strip()!r}') from None
  return labels


def check_labels(labels: list[int], num_classes: int) -> None:
  bad = [y for y in labels if not 0 <= y < num_classes]
  if bad:
    raise UserError(f'--labels {bad} out of range: this model has classes 0..{num_classes - 1}')


@cli.user_errors_exit
def main(argv):
  del argv
  from cgan_jax import sampling, visualize  # after flag parsing
  labels = parse_labels(_LABELS.value)
  gan, state = sampling.load(_WORKDIR.value, _STEP.value)
  check_labels(labels, gan.num_classes)
  images = sampling.draw(gan, state, labels, seed=_SEED.value)
  rows = -(-len(labels) // _COLUMNS.value)
  grid = visualize.grid(images, rows=rows, pixel_range=gan.pixel_range)
  try:
    visualize.save_png(grid, _OUT.value)
  except OSError as e:
    raise UserError(f'cannot write {_OUT.value}: {e.strerror or e}') from e
  print(f'wrote {_OUT.value}: labels {labels} from {_WORKDIR.value} step {int(state.step)}')


if __name__ == '__main__':
  cli.quiet_tensorflow()
  app.run(main)
