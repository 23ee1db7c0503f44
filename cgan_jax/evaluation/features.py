"""Feature spaces (the committed classifier, InceptionV3), features of images, and the cached
feature sets of real data splits."""

import dataclasses
import functools
import os
import sys
import time
from typing import Any, Callable, TextIO

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from cgan_jax import input_pipeline
from cgan_jax.evaluation import classifier, metrics

ENV_CACHE_DIR = 'CGAN_JAX_CACHE_DIR'
Extractor = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class FeatureSpace:
  """A feature extractor and what a table must say about it (its protocol)."""
  name: str                 # 'classifier' | 'inception'
  tag: str                  # names the weights in tables and cache files ('...-<sha256[:8]>')
  sha256: str               # of the weights: cached statistics are keyed by it
  feature_dim: int
  apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]  # (variables, images in
  variables: Any            # [0, 1] (B, H, W, C)) -> (features (B, D), probabilities (B, K))
  batch_size: int           # images per call
  resize: str               # what happens to a dataset-sized image before the network
  class_probs: bool         # probabilities are over the dataset's classes (cond. accuracy)
  note: str = ''            # a warning every table carries (e.g. nonstandard weights)
  protocol: str = ''        # the input protocol's id ('tf-fid-299'): with sha256, the cache key
  source: str = ''          # the weights file's name, for tables
  # A second opinion beside the classifier (InceptionV3): FID and KID only (IS when free), no
  # precision/recall nor per-class statistics; FID a dash, not an error, below d + 1 samples.
  fid_kid_only: bool = False


def classifier_space(asset: classifier.Asset, batch_size: int = 1000) -> FeatureSpace:
  """The committed per-dataset classifier as a feature space."""
  side = input_pipeline.DATASETS[asset.meta['dataset']].image_shape[0]
  def apply(variables: Any, x_BHWC: jax.Array) -> tuple[jax.Array, jax.Array]:
    features_BD, logits_BK = asset.model.apply(variables, x_BHWC, train=False)
    return features_BD, jax.nn.softmax(logits_BK)

  return FeatureSpace(name='classifier', tag=asset.tag, sha256=asset.meta['sha256'],
                      feature_dim=int(asset.meta['feature_dim']), apply=apply,
                      variables=asset.variables, batch_size=batch_size,
                      resize=f'none ({side}x{side}, the classifier\'s input)', class_probs=True,
                      source=f'classifier_{asset.meta["dataset"]}_v{asset.meta["version"]}.msgpack')


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


PROGRESS_EVERY_S = 10.0  # an extraction longer than this reports on stderr, this often


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f'{seconds} s'
  if seconds < 3600:
    return f'{seconds // 60} min {seconds % 60:02d} s'
  return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'


class Progress:
  """'label: done/total images, N images/s, ETA' on stderr every PROGRESS_EVERY_S, once the
  work has taken that long (short extractions print nothing), and a last line when done."""

  def __init__(self, total: int, label: str = 'features', stream: TextIO | None = None):
    self.total, self.label, self.stream = total, label, stream
    self.start = self.last = time.monotonic()
    self.printed = False

  def _line(self, done: int, now: float) -> str:
    rate = done / max(now - self.start, 1e-9)
    eta = _duration((self.total - done) / rate) if rate > 0 else '?'
    return (f'{self.label}: {done}/{self.total} images ({100 * done / self.total:.0f} %), '
            f'{rate:.1f} images/s, ETA {eta}')

  def update(self, done: int) -> None:
    now = time.monotonic()
    if now - self.last >= PROGRESS_EVERY_S and done < self.total:
      self.last, self.printed = now, True
      print(self._line(done, now), file=self.stream or sys.stderr, flush=True)

  def close(self) -> None:
    if self.printed:
      elapsed = time.monotonic() - self.start
      print(f'{self.label}: {self.total} images in {_duration(elapsed)} '
            f'({self.total / max(elapsed, 1e-9):.1f} images/s)', file=self.stream or sys.stderr,
            flush=True)


def in_batches(fn: Callable[..., tuple[jax.Array, jax.Array]], n: int, batch: int,
               *arrays: np.ndarray, label: str = 'features') -> tuple[np.ndarray, np.ndarray]:
  """Runs a jitted `fn` over the leading axis of `arrays` in fixed-size batches (the last one
  padded: one shape, one compilation; no larger than n), with progress on stderr when it takes
  long."""
  feats, probs = [], []
  batch = max(1, min(batch, n))
  progress = Progress(n, label)
  for i in range(0, n, batch):
    chunk = [a[i:i + batch] for a in arrays]
    valid = len(chunk[0])
    chunk = [np.concatenate([c, np.repeat(c[-1:], batch - valid, 0)]) if valid < batch else c
             for c in chunk]
    f, p = jax.device_get(fn(*chunk))
    feats.append(f[:valid])
    probs.append(p[:valid])
    progress.update(i + valid)
  progress.close()
  return np.concatenate(feats).astype(np.float32), np.concatenate(probs).astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _from_bytes(apply: Callable, variables: Any, x_BHWC: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
  """A space's features of uint8 images: compiled once per space (its `apply`) and batch
  shape, so the train and test splits share one compilation."""
  return apply(variables, x_BHWC.astype(jnp.float32) / 255.0)


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


def _class_stats(features: np.ndarray, labels: np.ndarray, num_classes: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Per-class means (K, D) and covariances (K, D, D); NaN for a class with < 2 images."""
  d = features.shape[1]
  means, covs = np.full((num_classes, d), np.nan), np.full((num_classes, d, d), np.nan)
  for c in range(num_classes):
    if np.sum(labels == c) >= 2:
      means[c], covs[c] = metrics.mean_cov(features[labels == c])
  return means, covs


def _real_set(features: np.ndarray, probs: np.ndarray, labels: np.ndarray,
              num_classes: int) -> RealSet:
  return RealSet(features, probs, labels, *metrics.mean_cov(features),
                 *_class_stats(features, labels, num_classes))


def _as_space(space: 'FeatureSpace | classifier.Asset', dataset: str | None
              ) -> tuple[FeatureSpace, str]:
  """(feature space, dataset); a classifier asset names its own dataset."""
  if isinstance(space, classifier.Asset):
    return classifier_space(space), dataset or space.meta['dataset']
  if dataset is None:
    raise ValueError('real_set of a FeatureSpace needs the dataset')
  return space, dataset


def cache_path(cache_dir: str, dataset: str, split: str,
               space: 'FeatureSpace | classifier.Asset', num_real: int = 0) -> str:
  """One file per dataset, split, feature space (its tag and input protocol) and real-image
  count."""
  count = f'_first{num_real}' if num_real else ''
  protocol = getattr(space, 'protocol', '')
  name = f'{space.tag}_{protocol}' if protocol else space.tag
  return os.path.join(cache_dir, f'real_{dataset}_{split}_{name}{count}.npz')


def _read_cache(path: str, sha256: str, protocol: str = '') -> RealSet | None:
  """The cached set if it exists and was computed by the extractor of checksum `sha256` with
  the input protocol `protocol` (the weights' sha256 and the protocol are both its key)."""
  try:
    with np.load(path) as f:
      theirs = str(f['extractor_protocol']) if 'extractor_protocol' in f.files else ''
      if str(f['extractor_sha256']) != sha256 or theirs != protocol:
        logging.warning('Ignoring %s: computed by another feature extractor or protocol', path)
        return None
      return RealSet(**{k: f[k] for k in RealSet.__dataclass_fields__})
  except (OSError, ValueError, KeyError, EOFError):
    return None  # absent, unreadable or from before checksums: recompute


def real_set(space: 'FeatureSpace | classifier.Asset', split: str, cache_dir: str | None = None,
             data_dir: str | None = None, batch: int | None = None, dataset: str | None = None,
             num_real: int = 0) -> RealSet:
  """Features/statistics of a real split (its first `num_real` images; 0: all), cached per
  dataset, split, count, feature extractor and input protocol (the sha256 of its weights and
  the protocol are checked on every read). Per-class statistics: none for fid_kid_only spaces."""
  space, dataset = _as_space(space, dataset)
  path = cache_path(cache_dir or default_cache_dir(), dataset, split, space, num_real)
  cached = _read_cache(path, space.sha256, space.protocol)
  if cached is not None:
    return cached
  images, labels = input_pipeline.load_split(dataset, split, data_dir)
  if num_real:
    images, labels = images[:num_real], labels[:num_real]
  logging.info('Computing %s features of %d real %s %s images (cached in %s)', space.name,
               len(images), dataset, split, path)
  feats, probs = in_batches(lambda x: _from_bytes(space.apply, space.variables, x),
                            len(images), batch or space.batch_size, images,
                            label=f'{space.name} features of real {dataset} {split}')
  num_classes = input_pipeline.DATASETS[input_pipeline.canonical_name(dataset)].num_classes
  out = _real_set(feats, probs, np.asarray(labels, np.int32),
                  0 if space.fid_kid_only else num_classes)
  _save(path, out, space.sha256, space.protocol)
  return out


def _save(path: str, real: RealSet, sha256: str, protocol: str = '') -> None:
  """Writes the cache atomically; an unwritable cache only costs recomputation next time."""
  tmp = f'{path}.tmp{os.getpid()}.npz'
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(tmp, extractor_sha256=np.asarray(sha256), extractor_protocol=np.asarray(protocol),
             **dataclasses.asdict(real))
    os.replace(tmp, path)
  except OSError as e:
    logging.warning('Not caching real-data features at %s: %s', path, e)
