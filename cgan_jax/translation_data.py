"""Image-to-image tasks built from real data, as arrays the ordinary input pipelines iterate.

A translation example is one uint8 image whose channels are [A ‖ B]: (N, S, S, 2C). Stacking
the two sides keeps every input path (tf.data, numpy, device-resident, multi-host) unchanged;
the step splits the channels again (`split_pair`).

Tasks (config.translation.task):
  edges    pix2pix, paired: A = the Sobel edge map of the image, B = the image (edges2shoes
           style). Edges are computed once, on the host, when the split is built.
  classes  CycleGAN, unpaired: A = images of class `class_a`, B = images of class `class_b`,
           paired at random (fixed seed; the shorter side is cycled). The pairing carries no
           information: every CycleGAN loss is per image, and norms are per image.
  folder   a folder of your own images (paired or unpaired), laid out as
             <folder>/train/A/*.png  <folder>/train/B/*.png  (and test/A, test/B for eval.py)
           Paired (pix2pix): A/x.png and B/x.png are one pair (same file name, both required).
           Unpaired (CycleGAN): any files, any counts, paired at random like `classes`.
           PNG/JPEG/BMP, converted to `channels` (1: grayscale, 3: RGB), resized to the side.
MNIST-size images (28x28) are zero-padded to `image_size` (default 32, so that a U-Net's
halvings are exact); folder images are resized to it.
"""

import glob
import os
from typing import Optional

import ml_collections
import numpy as np
import scipy.ndimage

from cgan_jax import input_pipeline
from cgan_jax.errors import UserError

TASKS = ('edges', 'classes', 'folder')
_IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp')


def sobel_edges(images_NHWC: np.ndarray) -> np.ndarray:
  """uint8 images -> uint8 edge maps: the Sobel gradient magnitude, each map scaled to [0, 255].

  Per image and channel: G = sqrt(Sx² + Sy²) with the 3x3 Sobel kernels [1 2 1]ᵀ[-1 0 1] and
  its transpose (borders replicate the edge pixel), then 255·G / max G (0 where the image is
  flat).
  """
  x = images_NHWC.astype(np.float32)
  # Explicit (1, 3, 3, 1) kernels: scipy.ndimage.sobel would also smooth across the batch
  # and channel axes of a 4-D array.
  kx = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])[None, :, :, None]
  sx = scipy.ndimage.correlate(x, kx, mode='nearest')
  sy = scipy.ndimage.correlate(x, kx.transpose(0, 2, 1, 3), mode='nearest')
  magnitude = np.hypot(sx, sy)
  peak = magnitude.max(axis=(1, 2), keepdims=True)
  scaled = np.where(peak > 0, 255.0 * magnitude / np.maximum(peak, 1e-12), 0.0)
  return np.round(scaled).astype(np.uint8)


def pad_to(images_NHWC: np.ndarray, side: int) -> np.ndarray:
  """Zero-pads (centred) square images to side x side; refuses to shrink."""
  h, w = images_NHWC.shape[1:3]
  if h > side or w > side:
    raise UserError(f'images of {h}x{w} do not fit image_size {side}')
  top, left = (side - h) // 2, (side - w) // 2
  return np.pad(images_NHWC, ((0, 0), (top, side - h - top), (left, side - w - left), (0, 0)))


def pair_unpaired(a_NHWC: np.ndarray, b_NHWC: np.ndarray, seed: int) -> np.ndarray:
  """Stacks two unpaired sets as [A ‖ B] in a random pairing; the shorter set is cycled
  (each of its images is used once per pass, in a fresh order per pass)."""
  rng = np.random.default_rng(seed)
  n = max(len(a_NHWC), len(b_NHWC))

  def cycled(x):
    passes = -(-n // len(x))
    return np.concatenate([rng.permutation(len(x)) for _ in range(passes)])[:n]

  return np.concatenate([a_NHWC[cycled(a_NHWC)], b_NHWC[cycled(b_NHWC)]], -1)


def _read_images(paths: list[str], side: int, channels: int) -> np.ndarray:
  from PIL import Image
  mode = {1: 'L', 3: 'RGB'}[channels]
  out = np.empty((len(paths), side, side, channels), np.uint8)
  for i, path in enumerate(paths):
    try:
      with Image.open(path) as img:
        img = img.convert(mode).resize((side, side), Image.BILINEAR)
    except OSError as e:
      raise UserError(f'cannot read image {path}: {e}') from e
    out[i] = np.asarray(img).reshape(side, side, channels)
  return out


def _listing(directory: str) -> dict[str, str]:
  if not os.path.isdir(directory):
    raise UserError(f'missing image folder {directory} (see cgan_jax/translation_data.py for '
                    'the layout: <folder>/<split>/A/*.png and <folder>/<split>/B/*.png)')
  files = {os.path.basename(p): p for p in sorted(glob.glob(os.path.join(directory, '*')))
           if p.lower().endswith(_IMAGE_EXTS)}
  if not files:
    raise UserError(f'no images ({", ".join(_IMAGE_EXTS)}) in {directory}')
  return files


def load_folder(folder: str, split: str, paired: bool, side: int, channels: int,
                seed: int) -> np.ndarray:
  """[A ‖ B] uint8 (N, side, side, 2·channels) from <folder>/<split>/{A,B}/."""
  a = _listing(os.path.join(folder, split, 'A'))
  b = _listing(os.path.join(folder, split, 'B'))
  if paired:
    if a.keys() != b.keys():
      only = sorted(a.keys() ^ b.keys())[:5]
      raise UserError(f'paired folders {folder}/{split}/A and B must hold the same file '
                      f'names; unmatched: {", ".join(only)}')
    names = sorted(a)
    return np.concatenate([_read_images([a[k] for k in names], side, channels),
                           _read_images([b[k] for k in names], side, channels)], -1)
  return pair_unpaired(_read_images(list(a.values()), side, channels),
                       _read_images(list(b.values()), side, channels), seed)


def class_pair(config: ml_collections.ConfigDict) -> Optional[tuple[int, int]]:
  """(class A, class B) of a `classes` task, else None."""
  t = config.translation
  if t.task != 'classes':
    return None
  info = input_pipeline.DATASETS[input_pipeline.canonical_name(config.dataset)]
  a, b = input_pipeline.class_index(info, t.class_a), input_pipeline.class_index(info, t.class_b)
  if a == b:
    raise UserError(f'class_a and class_b are the same class ({a})')
  return a, b


def channels(config: ml_collections.ConfigDict) -> int:
  """Channels of one side (A or B)."""
  if config.translation.task == 'folder':
    return config.translation.channels
  return input_pipeline.DATASETS[input_pipeline.canonical_name(config.dataset)].image_shape[-1]


def build_split(config: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
  """([A ‖ B] uint8 (N, S, S, 2C), labels int32 (N,)) of `split` for config.translation.

  Labels are the class of A for dataset tasks (kept for evaluation), 0 for folders.
  """
  t = config.translation
  if t.task not in TASKS:
    raise UserError(f'unknown translation task {t.task!r}; known: {", ".join(TASKS)}')
  side = t.image_size
  if t.task == 'folder':
    if not t.folder:
      raise UserError('translation.task=folder needs --config.translation.folder=<dir>')
    if t.channels not in (1, 3):
      raise UserError(f'translation.channels must be 1 or 3, got {t.channels}')
    pairs = load_folder(t.folder, split, t.paired, side, t.channels, config.seed)
    return pairs, np.zeros(len(pairs), np.int32)
  info = input_pipeline.DATASETS[input_pipeline.canonical_name(config.dataset)]
  images, labels = input_pipeline.load_split(info.name, split, config.data_dir or None,
                                             allow_download=config.allow_download)
  if t.task == 'edges':
    pairs = np.concatenate([sobel_edges(images), images], -1)
    return pad_to(pairs, side), labels.astype(np.int32)
  a, b = class_pair(config)
  pairs = pair_unpaired(images[labels == a], images[labels == b], config.seed)
  return pad_to(pairs, side), np.full(len(pairs), a, np.int32)


def split_pair(pair_BHWC, num_channels: int):
  """[A ‖ B] -> (A, B)."""
  return pair_BHWC[..., :num_channels], pair_BHWC[..., num_channels:]
