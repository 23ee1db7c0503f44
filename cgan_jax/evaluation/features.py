"""Classifier features of images, and the cached feature sets of real data splits."""

import dataclasses
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from cgan_jax import input_pipeline
from cgan_jax.evaluation import classifier, metrics

ENV_CACHE_DIR = 'CGAN_JAX_CACHE_DIR'
Extractor = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def default_cache_dir() -> str:
  """$CGAN_JAX_CACHE_DIR, else $XDG_CACHE_HOME/cgan_jax, else ~/.cache/cgan_jax."""
  if os.environ.get(ENV_CACHE_DIR):
    return os.environ[ENV_CACHE_DIR]
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'cgan_jax')


def to_unit_range(images: jax.Array, pixel_range: tuple[float, float],
                  side: int = 28) -> jax.Array:
  """Maps images from a generator's pixel range to [0, 1] (clipped) at side × side (resized,
  antialiased, when G works at another size, e.g. DCGAN's 64×64): the classifier's input."""
  lo, hi = pixel_range
  x = jnp.clip((images - lo) / (hi - lo), 0.0, 1.0)
  if x.shape[1:3] != (side, side):
    x = jax.image.resize(x, (x.shape[0], side, side, x.shape[3]), 'linear', antialias=True)
  return x


def extractor(asset: classifier.Asset) -> Extractor:
  """A traceable fn: images in [0, 1] (B, 28, 28, 1) -> (features (B, D), probabilities (B, K))."""

  def extract(x_BHWC: jax.Array) -> tuple[jax.Array, jax.Array]:
    features_BD, logits_BK = asset.model.apply(asset.variables, x_BHWC, train=False)
    return features_BD, jax.nn.softmax(logits_BK)

  return extract


def in_batches(fn: Callable[..., tuple[jax.Array, jax.Array]], n: int, batch: int,
               *arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Runs a jitted `fn` over the leading axis of `arrays` in fixed-size (padded) batches."""
  feats, probs = [], []
  for i in range(0, n, batch):
    chunk = [a[i:i + batch] for a in arrays]
    valid = len(chunk[0])
    chunk = [np.concatenate([c, np.repeat(c[-1:], batch - valid, 0)]) if valid < batch else c
             for c in chunk]  # one shape, one compilation
    f, p = jax.device_get(fn(*chunk))
    feats.append(f[:valid])
    probs.append(p[:valid])
  return np.concatenate(feats).astype(np.float32), np.concatenate(probs).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class RealSet:
  """Features of one real split plus their Gaussian statistics, overall and per class."""
  features: np.ndarray      # (N, D) float32
  probs: np.ndarray         # (N, K) float32
  labels: np.ndarray        # (N,) int32
  mean: np.ndarray          # (D,) float64
  cov: np.ndarray           # (D, D) float64
  class_means: np.ndarray   # (K, D) float64
  class_covs: np.ndarray    # (K, D, D) float64


def _real_set(features: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> RealSet:
  num_classes = probs.shape[1]
  per_class = [metrics.mean_cov(features[labels == c]) for c in range(num_classes)]
  return RealSet(features, probs, labels, *metrics.mean_cov(features),
                 np.stack([m for m, _ in per_class]), np.stack([c for _, c in per_class]))


def cache_path(cache_dir: str, dataset: str, split: str, asset: classifier.Asset) -> str:
  return os.path.join(cache_dir, f'real_{dataset}_{split}_{asset.tag}.npz')


def real_set(asset: classifier.Asset, split: str, cache_dir: str | None = None,
             data_dir: str | None = None, batch: int = 1000) -> RealSet:
  """Features/statistics of a real split, cached per dataset, split and feature version."""
  dataset = asset.meta['dataset']
  path = cache_path(cache_dir or default_cache_dir(), dataset, split, asset)
  try:
    with np.load(path) as f:
      return RealSet(**{k: f[k] for k in RealSet.__dataclass_fields__})
  except (OSError, ValueError, KeyError, EOFError):
    pass  # absent or unreadable: recompute
  images, labels = input_pipeline.load_split(dataset, split, data_dir)
  fn = jax.jit(lambda x: extractor(asset)(x.astype(jnp.float32) / 255.0))
  feats, probs = in_batches(fn, len(images), batch, images)
  out = _real_set(feats, probs, np.asarray(labels, np.int32))
  _save(path, out)
  return out


def _save(path: str, real: RealSet) -> None:
  """Writes the cache atomically; an unwritable cache only costs recomputation next time."""
  tmp = f'{path}.tmp{os.getpid()}.npz'
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(tmp, **dataclasses.asdict(real))
    os.replace(tmp, path)
  except OSError as e:
    logging.warning('Not caching real-data features at %s: %s', path, e)
