"""Scores image-to-image runs (pix2pix, CycleGAN) on the held-out split.

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

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.ndimage
from absl import logging

from cgan_jax import checkpointing, input_pipeline, models, tasks, translation_data
from cgan_jax import translation_steps as ts
from cgan_jax.evaluation import classifier, features, metrics

Row = dict[str, Any]
PAD = 2  # 28x28 data is zero-padded to 32x32 (translation_data.pad_to)


def is_translation(config: ml_collections.ConfigDict) -> bool:
  return tasks.kind(config) == tasks.TranslationTask.kind


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


def _translate(task, g_params, g_stats, x_uint8: np.ndarray, batch: int) -> np.ndarray:
  """G on uint8 images, in batches -> float32 in [0, 1]."""
  run = jax.jit(functools.partial(ts.translate, task.spec))
  out = []
  for i in range(0, len(x_uint8), batch):
    y = run(g_params, g_stats, ts.to_pixel_range(jnp.asarray(x_uint8[i:i + batch])))
    out.append(np.asarray(jax.device_get(y)))
  return (np.concatenate(out) + 1.0) / 2.0


class TranslationEvaluator:
  """The classifier (for dataset tasks) and the test data of one run's task."""

  def __init__(self, options):
    self.options = options
    self._assets: dict[str, classifier.Asset] = {}

  def _features(self, dataset: str, images_unit_NHWC: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Classifier features and probabilities of 32x32 [0, 1] images (padding cropped)."""
    if dataset not in self._assets:
      self._assets[dataset] = classifier.load_asset(dataset, self.options.assets_dir)
    extract = jax.jit(features.extractor(self._assets[dataset]))
    crop = images_unit_NHWC[:, PAD:-PAD, PAD:-PAD].astype(np.float32)
    return features.in_batches(extract, len(crop), self.options.batch_size, crop)

  def _fid(self, dataset: str, a: np.ndarray, b: np.ndarray) -> float:
    return metrics.fid(self._features(dataset, a)[0], self._features(dataset, b)[0])

  def _header(self, run: str, config, step, samples) -> Row:
    return {'run': run, 'model': models.label(config), 'task': _task_name(config), 'step': step,
            'samples': samples}

  def rows(self, workdir: str, step: int | None, reference: bool) -> list[Row]:
    task, state = load(workdir, step)
    config, step = task.config, int(state.step)
    logging.info('Scoring %s step %d (%s)', workdir, step, models.label(config))
    if task.spec.two_way:
      return self._cyclegan(workdir, config, task, state, step, reference)
    return self._pix2pix(workdir, config, task, state, step, reference)

  def _pix2pix(self, workdir, config, task, state, step, reference) -> list[Row]:
    pairs, _ = translation_data.build_split(config, 'test')
    pairs = pairs[:self.options.num_samples]
    a_u8, b_u8 = translation_data.split_pair(pairs, task.channels)
    a, b = a_u8 / 255.0, b_u8 / 255.0
    dataset = None if config.translation.task == 'folder' else input_pipeline.canonical_name(
        config.dataset)

    def score(run: str, out: np.ndarray, at_step) -> Row:
      return {**self._header(run, config, at_step, len(out)),
              'l1': float(np.mean(np.abs(out - b))), 'ssim': float(np.mean(ssim(out, b))),
              'fid': self._fid(dataset, out, b) if dataset else None}

    rows = []
    if reference:
      rows += [score('baseline: identity (output = input)', a, None),
               score('baseline: blank (output = 0)', np.zeros_like(b), None)]
    out = _translate(task, state.g_params, state.g_stats, a_u8, self.options.batch_size)
    return rows + [score(workdir, out, step)]

  def _cyclegan(self, workdir, config, task, state, step, reference) -> list[Row]:
    pair = translation_data.class_pair(config)
    if pair is None:
      raise _folder_error(workdir)
    dataset = input_pipeline.canonical_name(config.dataset)
    images, labels = input_pipeline.load_split(dataset, 'test', self.options.data_dir,
                                               allow_download=False)
    n = self.options.num_samples
    side = config.translation.image_size
    a_u8 = translation_data.pad_to(images[labels == pair[0]][:n], side)
    b_u8 = translation_data.pad_to(images[labels == pair[1]][:n], side)
    a, b = a_u8 / 255.0, b_u8 / 255.0

    def score(run: str, a_to_b: np.ndarray, b_to_a: np.ndarray, at_step) -> Row:
      return {**self._header(run, config, at_step, len(a_to_b) + len(b_to_a)),
              'share_ab': _share(self._features(dataset, a_to_b)[1], pair[1]),
              'share_ba': _share(self._features(dataset, b_to_a)[1], pair[0]),
              'fid_ab': self._fid(dataset, a_to_b, b), 'fid_ba': self._fid(dataset, b_to_a, a)}

    rows = [score('baseline: identity (untranslated)', a, b, None)] if reference else []
    bs = self.options.batch_size
    a_to_b = _translate(task, state.g_params['ab'], state.g_stats['ab'], a_u8, bs)
    b_to_a = _translate(task, state.g_params['ba'], state.g_stats['ba'], b_u8, bs)
    return rows + [score(workdir, a_to_b, b_to_a, step)]


def _share(probs_NK: np.ndarray, target: int) -> float:
  return float(np.mean(np.argmax(probs_NK, -1) == target))


def _task_name(config) -> str:
  t = config.translation
  if t.task == 'classes':
    return f'{config.dataset}: {t.class_a} <-> {t.class_b}'
  if t.task == 'edges':
    return f'{config.dataset}: edges -> image'
  return f'folder {t.folder}'


def _folder_error(workdir: str):
  from cgan_jax.errors import UserError
  return UserError(f'{workdir}: CycleGAN runs on an image folder have no class to score '
                   'against; eval.py scores CycleGAN on dataset class pairs only')


# Table schemas: (key, markdown header, formatter); CSV/JSON use the keys.
_fixed = lambda digits: (lambda row, k: f'{row[k]:.{digits}f}')
_pct = lambda row, k: f'{100 * row[k]:.1f} %'
_text = lambda row, k: str(row[k])
_HEAD = (('run', 'run', _text), ('model', 'model', _text), ('task', 'task', _text),
         ('step', 'step', _text), ('samples', 'samples', _text))
SCHEMAS = {
    'pix2pix': (*_HEAD, ('l1', 'L1 ↓', _fixed(4)), ('ssim', 'SSIM ↑', _fixed(4)),
                ('fid', 'FID ↓', _fixed(2))),
    'cyclegan': (*_HEAD, ('share_ab', 'G(A) in class B ↑', _pct),
                 ('share_ba', 'F(B) in class A ↑', _pct), ('fid_ab', 'FID G(A)↔B ↓', _fixed(2)),
                 ('fid_ba', 'FID F(B)↔A ↓', _fixed(2))),
}
