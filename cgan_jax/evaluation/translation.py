"""What scoring image-to-image runs on the held-out split needs; each kind's own scores are
its class's `score` (cgan_jax/kinds/pix2pix.py, cyclegan.py):

pix2pix   G(A) against the paired targets B of the test split: L1 and SSIM (pixels in [0, 1]),
          and FID between G(A) and the targets in the classifier's feature space. Beside the
          run rows, two baselines: "identity" (the input A returned as is) and "blank" (an
          all-background image): a model that learned anything beats both on L1.
CycleGAN  test images of class A and class B (Fashion-MNIST / MNIST tasks): the share of G(A)
          that the committed classifier puts in class B (and of F(B) in class A), and the FID
          of G(A) to the real B images (and of F(B) to A). Baseline "identity": the
          untranslated images scored the same way.
Folder tasks get L1/SSIM (pix2pix) only: the feature classifier knows only MNIST-style data.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.ndimage
from absl import logging

from cgan_jax import checkpointing, models, tasks
from cgan_jax import translation_steps as ts
from cgan_jax.evaluation import classifier, features, metrics

Row = dict[str, Any]
PAD = 2  # 28x28 data is zero-padded to 32x32 (translation_data.pad_to)


def ssim(x_NHWC: np.ndarray, y_NHWC: np.ndarray, data_range: float = 1.0) -> np.ndarray:
  """Per-image SSIM (Wang et al. 2004): 11x11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03,
  statistics over 'valid' windows only, mean over pixels and channels (as tf.image.ssim)."""
  x, y = np.asarray(x_NHWC, np.float64), np.asarray(y_NHWC, np.float64)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  taps = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
  taps /= taps.sum()

  def blur(z):  # separable Gaussian over H and W, then keep the windows inside the image
    z = scipy.ndimage.correlate1d(z, taps, axis=1, mode='constant')
    z = scipy.ndimage.correlate1d(z, taps, axis=2, mode='constant')
    return z[:, 5:-5, 5:-5]

  mx, my = blur(x), blur(y)
  vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
  s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
  return s.reshape(len(s), -1).mean(-1)


def load(workdir: str, step: int | None = None) -> tuple[Any, ts.TranslationState]:
  """The task and state of a translation workdir's checkpoint, on one local device."""
  ckpt = checkpointing.Checkpointer(workdir, read_only=True)
  meta = ckpt.restore_meta(step)
  config = ml_collections.ConfigDict(meta['config'])
  task = tasks.build(config, axis_name=None, steps_per_epoch=meta['steps_per_epoch'])
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return task, ckpt.restore_state(task.abstract_state(sharding), step)


def translate_all(task, g_params, g_stats, x_uint8: np.ndarray, batch: int) -> np.ndarray:
  """G on uint8 images, in batches -> float32 in [0, 1]."""
  out = []
  for i in range(0, len(x_uint8), batch):
    y = task.translate(g_params, g_stats, ts.to_pixel_range(jnp.asarray(x_uint8[i:i + batch])))
    out.append(np.asarray(jax.device_get(y)))
  return (np.concatenate(out) + 1.0) / 2.0


class TranslationEvaluator:
  """The classifier (for dataset tasks) and the test data of one run's task."""

  def __init__(self, options):
    self.options = options
    self._assets: dict[str, classifier.Asset] = {}

  def features(self, dataset: str, images_unit_NHWC: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Classifier features and probabilities of 32x32 [0, 1] images (padding cropped)."""
    if dataset not in self._assets:
      self._assets[dataset] = classifier.load_asset(dataset, self.options.assets_dir)
    extract = jax.jit(features.extractor(self._assets[dataset]))
    crop = images_unit_NHWC[:, PAD:-PAD, PAD:-PAD].astype(np.float32)
    return features.in_batches(extract, len(crop), self.options.batch_size, crop)

  def fid(self, dataset: str, a: np.ndarray, b: np.ndarray) -> float:
    return metrics.fid(self.features(dataset, a)[0], self.features(dataset, b)[0])

  def header(self, run: str, config, step, samples) -> Row:
    return {'run': run, 'model': models.label(config), 'task': _task_name(config), 'step': step,
            'samples': samples}

  def rows(self, workdir: str, step: int | None, reference: bool) -> list[Row]:
    """The rows of one checkpoint (latest by default), its kind's baselines first when
    `reference`."""
    task, state = load(workdir, step)
    logging.info('Scoring %s step %d (%s)', workdir, int(state.step), models.label(task.config))
    return task.score(self, workdir, state, reference)


def _task_name(config) -> str:
  t = config.translation
  if t.task == 'classes':
    return f'{config.dataset}: {t.class_a} <-> {t.class_b}'
  if t.task == 'edges':
    return f'{config.dataset}: edges -> image'
  return f'folder {t.folder}'
