"""Draws the classes you ask for from a trained workdir's latest checkpoint.

  python generate.py --workdir=runs/cgan --labels=sneaker,sneaker,bag --out=shoes.png
  python generate.py --workdir=runs/cgan --labels=all --num_per_label=8 --out=sheet.png
  python generate.py --workdir=runs/cgan --labels=7 --num_per_label=1000 --out=sneakers.npz

Labels are class names (case-insensitive; 'ankle boot', 't-shirt') or indices. A PNG is
upscaled (nearest neighbour) so that one image is visible in a viewer; an .npz holds the
arrays: `images` (uint8, N x H x W x C, unscaled), `labels`, `class_names`, `step`, `seed`.
"""

import math
import os

from absl import app, flags

from cgan_jax import cli
from cgan_jax.errors import UserError

_WORKDIR = flags.DEFINE_string('workdir', None, 'A train.py workdir.', required=True)
_LABELS = flags.DEFINE_string('labels', 'all', 'Comma-separated classes, by name or index '
                              '(sneaker,bag or 7,8), or "all": one row per class.')
_NUM_PER_LABEL = flags.DEFINE_integer('num_per_label', 0, 'Images per label, side by side in '
                                      'its own row (0: 10 with --labels=all, else 1).')
_OUT = flags.DEFINE_string('out', 'samples.png', 'Output path: .png (a grid) or .npz (arrays).')
_SCALE = flags.DEFINE_integer('scale', 0, 'PNG upscaling factor, nearest neighbour (0: so that '
                              'each image is at least 128 pixels wide; 1: none).')
_SEED = flags.DEFINE_integer('seed', 0, 'Noise seed; the same seed draws the same images.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
_GENERATOR = flags.DEFINE_enum('generator', 'auto', ['auto', 'ema', 'raw'],
                               'Runs with an EMA of G: draw with it (auto, ema) or with the '
                               'trained G (raw).')
_COLUMNS = flags.DEFINE_integer('columns', 10, 'Images per row when each label has one image.')

MIN_VISIBLE_PIXELS = 128  # --scale=0 makes each image at least this wide


def parse_labels(text: str, info) -> list[int]:
  """'sneaker,7, Bag' -> [7, 7, 8]; 'all' -> every class; anything else is a UserError that
  names the dataset's classes."""
  from cgan_jax import input_pipeline
  if text.strip().lower() == 'all':
    return list(range(info.num_classes))
  parts = [p for p in text.split(',')]
  if not any(p.strip() for p in parts):
    raise UserError(f'--labels is empty; give class names or indices, or "all" ({info.name}: '
                    f'{", ".join(info.class_names)})')
  try:
    return [input_pipeline.class_index(info, p) for p in parts]
  except UserError as e:
    raise UserError(f'--labels: {e}') from None


def auto_scale(image_width: int) -> int:
  """The smallest integer factor that makes an image at least MIN_VISIBLE_PIXELS wide."""
  return max(1, math.ceil(MIN_VISIBLE_PIXELS / image_width))


@cli.user_errors_exit
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for flag, least in ((_NUM_PER_LABEL, 0), (_SCALE, 0), (_COLUMNS, 1)):
    if flag.value < least:
      raise UserError(f'--{flag.name} must be at least {least}, got {flag.value}')
  kind = os.path.splitext(_OUT.value)[1].lower()
  if kind not in ('.png', '.npz'):
    raise UserError(f'--out must end in .png or .npz, got {_OUT.value!r}')
  import numpy as np
  from cgan_jax import sampling, visualize  # after flag parsing: keeps --help fast
  info = sampling.dataset_info(_WORKDIR.value, _STEP.value)
  labels = parse_labels(_LABELS.value, info)
  per_label = _NUM_PER_LABEL.value or (10 if _LABELS.value.strip().lower() == 'all' else 1)
  gan, state = sampling.load(_WORKDIR.value, _STEP.value)
  every = _LABELS.value.strip().lower() == 'all'
  if not gan.conditional and not every:
    raise UserError(f'{_WORKDIR.value} holds an unconditional model: it cannot draw a chosen '
                    'class; use --labels=all (a grid of whatever it draws)')
  drawn = [y for y in labels for _ in range(per_label)]
  images = sampling.draw(gan, state, drawn, seed=_SEED.value, generator=_GENERATOR.value)
  lo, hi = gan.pixel_range
  if per_label > 1 or every:
    rows = len(labels)  # one row per label
  else:
    rows = -(-len(labels) // _COLUMNS.value)
  try:
    if kind == '.npz':
      uint8 = np.round(np.clip((images - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
      np.savez_compressed(_OUT.value, images=uint8, labels=np.asarray(drawn, np.int32),
                          class_names=np.asarray(info.class_names), step=int(state.step),
                          seed=_SEED.value)
    else:
      grid = visualize.grid(images, rows=rows, pixel_range=gan.pixel_range)
      scale = _SCALE.value or auto_scale(images.shape[2])
      visualize.save_png(visualize.upscale(grid, scale), _OUT.value)
  except OSError as e:
    raise UserError(f'cannot write {_OUT.value}: {e.strerror or e}') from e
  names = (', '.join(info.class_names[y] for y in dict.fromkeys(labels)) if gan.conditional
           else 'unconditional: classes as they come')
  print(f'wrote {_OUT.value}: {len(drawn)} images ({names}) from {_WORKDIR.value} step '
        f'{int(state.step)}')


if __name__ == '__main__':
  app.run(main)
