"""Tests for cgan_jax.input_pipeline (real Fashion-MNIST, synthetic IDX)."""

import gzip
import os
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest

from cgan_jax import input_pipeline as ip
from cgan_jax.errors import UserError

FASHION_DIR = '/usr/share/datasets/fashion-mnist'
FASHION_FILES = [f'{p}-{k}-ubyte.gz' for p in ('train', 't10k')
                 for k in ('images-idx3', 'labels-idx1')]
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _idx(array: np.ndarray) -> bytes:
  """Independent IDX encoder used to build valid and broken test files."""
  array = np.asarray(array, np.uint8)
  return (bytes([0, 0, 0x08, array.ndim]) + struct.pack(f'>{array.ndim}I',
                                                        *array.shape)
          + array.tobytes())


def _synthetic(n: int, seed: int, num_classes: int = 10):
  """Random uint8 images (n,28,28) and labels cycling through the classes."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
  return images, (np.arange(n) % num_classes).astype(np.uint8)


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
  """Tests must not depend on the caller's CGAN_JAX_DATA_DIR."""
  monkeypatch.delenv(ip.ENV_DATA_DIR, raising=False)


def _require_fashion_files():
  """Fails (not skips): CI must install dataset-fashion-mnist."""
  missing = [f for f in FASHION_FILES
             if not os.path.isfile(os.path.join(FASHION_DIR, f))]
  if missing:
    pytest.fail(f'Real Fashion-MNIST missing in {FASHION_DIR} ({missing}); '
                'run `apt-get install dataset-fashion-mnist`.')


@pytest.fixture(scope='module')
def fashion_train():
  """Real Fashion-MNIST train split loaded through the default sources."""
  _require_fashion_files()
  with pytest.MonkeyPatch.context() as mp:
    mp.delenv(ip.ENV_DATA_DIR, raising=False)
    return ip.load_split('fashion_mnist', 'train')


# ----------------------------------------------------------------- real data


def test_real_fashion_mnist_train(fashion_train):
  images, labels = fashion_train
  assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.shape == (60000,) and labels.dtype == np.int32
  assert set(np.unique(labels).tolist()) == set(range(10))
  np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
  assert 0 < images.mean() < 255 and images.max() == 255
  assert not images.flags.writeable and not labels.flags.writeable
  first = ip.load_split('fashion_mnist', 'train')
  again = ip.load_split('fashion-mnist', 'train')  # Alias hits the cache.
  assert again[0] is first[0] and again[1] is first[1]
  np.testing.assert_array_equal(first[0], images)


def test_real_fashion_mnist_test():
  _require_fashion_files()
  images, labels = ip.load_split('Fashion-MNIST', 'test')
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.dtype == np.int32
  assert set(np.unique(labels).tolist()) == set(range(10))
  np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
  raw = ip.read_idx(os.path.join(FASHION_DIR, 't10k-images-idx3-ubyte.gz'))
  np.testing.assert_array_equal(images[..., 0], raw)


# ------------------------------------------------------------ IDX validation


def _write_gz(path, payload: bytes):
  with gzip.open(path, 'wb') as f:
    f.write(payload)


GOOD = _idx(_synthetic(3, 0)[0])


@pytest.mark.parametrize('name,payload,gz,expect', [
    ('bad_magic', b'\x08\x03' + GOOD[2:], True, 'bad magic'),
    ('bad_dtype', GOOD[:2] + b'\x0d' + GOOD[3:], True, 'dtype code 0x0d'),
    ('bad_ndim', GOOD[:3] + b'\x02' + GOOD[4:], True, 'dimensions 2'),
    ('short_header', GOOD[:9], True, 'header truncated'),
    ('truncated', GOOD[:-100], True, 'truncated payload'),
    ('oversize', GOOD + b'\x00' * 7, True, 'oversize payload'),
    ('raw_truncated', GOOD[:-1], False, 'truncated payload'),
    ('corrupt_gzip', b'\x1f\x8b' + b'\xff' * 64, False, 'corrupt gzip'),
    ('cut_gzip', gzip.compress(GOOD)[:-20], False, 'corrupt gzip'),
    ('empty', b'', False, 'bad magic'),
])
def test_read_idx_refuses(tmp_path, name, payload, gz, expect):
  path = tmp_path / f'{name}.idx'
  _write_gz(path, payload) if gz else path.write_bytes(payload)
  with pytest.raises(ip.DataError, match=expect) as e:
    ip.read_idx(path)
  assert str(path) in str(e.value)
  assert isinstance(e.value, UserError)


def test_read_idx_raw_and_gzip_detected_by_magic(tmp_path):
  images = _synthetic(4, 1)[0]
  (tmp_path / 'raw.gz').write_bytes(_idx(images))  # Raw despite .gz suffix.
  _write_gz(tmp_path / 'zipped', _idx(images))  # Gzip without suffix.
  for name in ('raw.gz', 'zipped'):
    out = ip.read_idx(tmp_path / name)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


def test_read_idx_missing_file(tmp_path):
  with pytest.raises(ip.DataError, match='cannot read'):
    ip.read_idx(tmp_path / 'nope')


def test_truncated_file_in_dir_does_not_fall_through(tmp_path):
  images, labels = _synthetic(20, 2)
  ip.make_synthetic_idx(tmp_path, images, labels, prefix='train')
  bad = tmp_path / 'train-images-idx3-ubyte.gz'
  _write_gz(bad, _idx(images)[:-28])
  # fashion_mnist would otherwise fall back to the system copy.
  with pytest.raises(ip.DataError, match='truncated') as e:
    ip.load_split('fashion_mnist', 'train', data_dir=tmp_path)
  assert str(bad) in str(e.value)


@pytest.mark.parametrize('images,labels,expect', [
    (np.zeros((5, 28, 28)), np.full(5, 10), r'labels must be in \[0, 10\)'),
    (np.zeros((5, 28, 28)), np.zeros(4), '5 images but labels'),
    (np.zeros((5, 32, 32)), np.zeros(5), 'expected'),
])
def test_load_split_validates_contents(tmp_path, images, labels, expect):
  _write_gz(tmp_path / 't10k-images-idx3-ubyte.gz', _idx(images))
  _write_gz(tmp_path / 't10k-labels-idx1-ubyte.gz', _idx(labels))
  with pytest.raises(ip.DataError, match=expect):
    ip.load_split('mnist', 'test', data_dir=tmp_path)


# -------------------------------------------------------- MNIST / sources


def test_mnist_from_data_dir(tmp_path):
  for split, n in (('train', 30), ('test', 7)):
    images, labels = _synthetic(n, n)
    ip.make_synthetic_idx(tmp_path, images[..., None], labels, prefix=split)
    got_images, got_labels = ip.load_split('mnist', split, data_dir=tmp_path)
    assert got_images.shape == (n, 28, 28, 1) and got_labels.dtype == np.int32
    np.testing.assert_array_equal(got_images[..., 0], images)
    np.testing.assert_array_equal(got_labels, labels)
  assert sorted(os.listdir(tmp_path)) == sorted(FASHION_FILES)


def test_mnist_uncompressed_files(tmp_path):
  images, labels = _synthetic(9, 3)
  (tmp_path / 't10k-images-idx3-ubyte').write_bytes(_idx(images))
  (tmp_path / 't10k-labels-idx1-ubyte').write_bytes(_idx(labels))
  got = ip.load_split('mnist', 'test', data_dir=str(tmp_path))
  np.testing.assert_array_equal(got[0][..., 0], images)


def test_mnist_from_env_var(tmp_path, monkeypatch):
  images, labels = _synthetic(11, 4)
  ip.make_synthetic_idx(tmp_path, images, labels, prefix='test')
  monkeypatch.setenv(ip.ENV_DATA_DIR, str(tmp_path))
  got_images, got_labels = ip.load_split('mnist', 'test')
  np.testing.assert_array_equal(got_images[..., 0], images)
  np.testing.assert_array_equal(got_labels, labels)


def test_nothing_found_lists_sources(tmp_path):
  (tmp_path / 'mnist').mkdir()  # Looks like TFDS data, but is not prepared.
  with pytest.raises(ip.DataError) as e:
    ip.load_split('mnist', 'train', data_dir=tmp_path, allow_download=False)
  msg = str(e.value)
  for part in (f'TFDS prepared data in {tmp_path}', f'IDX files in {tmp_path}',
               'missing train-images-idx3-ubyte[.gz]',
               '$CGAN_JAX_DATA_DIR: variable not set',
               'TFDS download: not allowed', 'CGAN_JAX_DATA_DIR',
               '--config.data_dir', '--config.allow_download=true'):
    assert part in msg, (part, msg)


def test_nothing_found_fashion_hint(tmp_path, monkeypatch):
  info = ip.DatasetInfo('fashion_mnist', idx_dirs=(str(tmp_path / 'absent'),))
  monkeypatch.setitem(ip.DATASETS, 'fashion_mnist', info)
  with pytest.raises(ip.DataError) as e:
    ip.load_split('fashion_mnist', 'test', data_dir=tmp_path)
  assert 'apt-get install dataset-fashion-mnist' in str(e.value)
  assert f'{tmp_path / "absent"}: directory does not exist' in str(e.value)


def test_unknown_name_and_split():
  with pytest.raises(ip.DataError, match='cifar10, fashion_mnist, mnist'):
    ip.load_split('stl10', 'train')
  with pytest.raises(ip.DataError, match='Unknown split'):
    ip.load_split('mnist', 'validation')
  assert ip.canonical_name('fashion-mnist') == 'fashion_mnist'
  assert ip.canonical_name('MNIST') == 'mnist'


# ------------------------------------------------------------------ TFDS


@pytest.fixture
def prepared_tfds_mnist(tmp_path):
  """A real (tiny) TFDS-prepared 'mnist' built offline from local IDX files."""
  tfds = pytest.importorskip('tensorflow_datasets')
  from tensorflow_datasets.image_classification import mnist as tfds_mnist
  raw, data = {}, {}
  for split, n in (('train', 12), ('test', 5)):
    data[split] = _synthetic(n, 10 + n)
    for kind, arr in zip(('data', 'labels'), data[split]):
      raw[f'{split}_{kind}'] = tmp_path / f'raw_{split}_{kind}'
      raw[f'{split}_{kind}'].write_bytes(_idx(arr))
  data_dir = tmp_path / 'tfds'
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(tfds_mnist, '_TRAIN_EXAMPLES', 12)
    mp.setattr(tfds_mnist, '_TEST_EXAMPLES', 5)
    mp.setattr(tfds.download.DownloadManager, 'download_and_extract',
               lambda self, urls: {k: str(raw[k]) for k in urls})
    tfds.builder('mnist', data_dir=str(data_dir)).download_and_prepare()
  return data_dir, data


def _rows(images, labels):
  """Order-independent view of a dataset: sorted (label, image bytes)."""
  return sorted((int(l), i.tobytes()) for i, l in zip(images, labels))


def test_tfds_prepared_source(prepared_tfds_mnist):
  data_dir, data = prepared_tfds_mnist
  for split in ('train', 'test'):
    images, labels = ip.load_split('mnist', split, data_dir=data_dir)
    assert images.shape == (len(data[split][0]), 28, 28, 1)
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    assert _rows(images[..., 0], labels) == _rows(*data[split])


def test_tfds_download_source_passes_flag(monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  calls = []
  images, labels = _synthetic(6, 5)

  def fake_load(name, **kwargs):
    calls.append((name, kwargs))
    return {'image': images[..., None], 'label': labels.astype(np.int64)}

  monkeypatch.setattr(tfds, 'load', fake_load)
  monkeypatch.setattr(tfds, 'as_numpy', lambda x: x)
  monkeypatch.setenv(ip.ENV_DATA_DIR, '/nonexistent')
  with pytest.raises(ip.DataError, match='not allowed'):  # conftest's offline switch wins
    ip.load_split('mnist', 'train', allow_download=True)
  assert calls == []
  monkeypatch.delenv(ip.ENV_OFFLINE)
  got = ip.load_split('mnist', 'train', allow_download=True)
  np.testing.assert_array_equal(got[0][..., 0], images)
  assert calls == [('mnist', dict(split='train', data_dir=None, download=True,
                                   batch_size=-1))]


def test_works_without_tensorflow(tmp_path):
  """Module, IDX loading and the numpy pipeline need no TF/TFDS."""
  ip.make_synthetic_idx(tmp_path, *_synthetic(16, 6), prefix='train')
  (tmp_path / 'mnist').mkdir()
  script = f'''
import sys
sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None
from cgan_jax import input_pipeline as ip
x, y = ip.load_split('mnist', 'train', data_dir={str(tmp_path)!r})
b = list(ip.batches(x, y, global_batch=4, seed=0, epoch=0, pipeline='numpy'))
assert len(b) == 4 and b[0]['image'].shape == (1, 4, 28, 28, 1)
try:
  ip.load_split('mnist', 'test', data_dir={str(tmp_path)!r})
except ip.DataError as e:
  assert 'tensorflow_datasets not installed' in str(e), str(e)
else:
  raise AssertionError('expected DataError')
print('OK')
'''
  env = {k: v for k, v in os.environ.items() if k != ip.ENV_DATA_DIR}
  out = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 0 and 'OK' in out.stdout, out.stderr


# -------------------------------------------------------------- batching


def test_epoch_permutation():
  a = ip.epoch_permutation(7, 3, 1000)
  assert a.dtype == np.int64
  np.testing.assert_array_equal(a, ip.epoch_permutation(7, 3, 1000))
  np.testing.assert_array_equal(np.sort(a), np.arange(1000))
  assert not np.array_equal(a, ip.epoch_permutation(7, 4, 1000))
  assert not np.array_equal(a, ip.epoch_permutation(8, 3, 1000))
  expected = np.random.default_rng(np.random.SeedSequence([7, 3])).permutation(
      1000)
  np.testing.assert_array_equal(a, expected)


def test_steps_per_epoch():
  assert ip.steps_per_epoch(60000, 256) == 234
  assert ip.steps_per_epoch(64, 64) == 1
  for n, b in ((63, 64), (10, 0)):
    with pytest.raises(ip.DataError):
      ip.steps_per_epoch(n, b)


def _collect(images, labels, **kw):
  return list(ip.batches(images, labels, seed=5, epoch=2, **kw))


def _assert_same(xs, ys):
  assert len(xs) == len(ys)
  for x, y in zip(xs, ys):
    assert x.keys() == y.keys() == {'image', 'label'}
    for k in x:
      assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape
      np.testing.assert_array_equal(x[k], y[k])


def test_batches_pipelines_identical_and_ordered(fashion_train):
  images, labels = fashion_train
  tf_b = _collect(images, labels, global_batch=256, pipeline='tf.data')
  np_b = _collect(images, labels, global_batch=256, pipeline='numpy')
  assert len(tf_b) == 234  # 60000 // 256; the last 96 examples are dropped.
  _assert_same(tf_b, np_b)
  perm = ip.epoch_permutation(5, 2, 60000)
  for s in (0, 117, 233):
    rows = perm[s * 256:(s + 1) * 256]
    assert tf_b[s]['image'].dtype == np.uint8
    assert tf_b[s]['label'].dtype == np.int32
    np.testing.assert_array_equal(tf_b[s]['image'], images[rows][None])
    np.testing.assert_array_equal(tf_b[s]['label'], labels[rows][None])
  cached = len(ip._TF_CONSTANTS)  # Converted once per dataset object:
  next(ip.batches(images, labels, global_batch=256, seed=5, epoch=3))
  assert len(ip._TF_CONSTANTS) == cached
  assert (id(images), id(labels)) in ip._TF_CONSTANTS


@pytest.mark.parametrize('pipeline', ip.PIPELINES)
def test_batches_start_step_and_processes(fashion_train, pipeline):
  images, labels = fashion_train[0][:1000], fashion_train[1][:1000]
  full = _collect(images, labels, global_batch=96, pipeline=pipeline)
  assert len(full) == 10
  _assert_same(_collect(images, labels, global_batch=96, start_step=7,
                        pipeline=pipeline), full[7:])
  assert _collect(images, labels, global_batch=96, start_step=10,
                  pipeline=pipeline) == []
  parts = [_collect(images, labels, global_batch=96, start_step=3,
                    process_index=p, process_count=2, pipeline=pipeline)
           for p in range(2)]
  assert len(parts[0]) == len(parts[1]) == 7
  for s, (a, b) in enumerate(zip(*parts)):
    assert a['image'].shape == (1, 48, 28, 28, 1)
    _assert_same([{k: np.concatenate([a[k], b[k]], axis=1) for k in a}], [full[3 + s]])


@pytest.mark.parametrize('pipeline', ip.PIPELINES)
def test_micro_steps_take_consecutive_global_batches(fashion_train, pipeline):
  """n_critic = 3: a step holds 3 consecutive global batches; processes split each one."""
  images, labels = fashion_train[0][:1000], fashion_train[1][:1000]
  flat = _collect(images, labels, global_batch=32, pipeline=pipeline)
  steps = _collect(images, labels, global_batch=32, micro_steps=3, pipeline=pipeline)
  assert len(steps) == 1000 // 96 == 10
  assert steps[0]['image'].shape == (3, 32, 28, 28, 1) and steps[0]['label'].shape == (3, 32)
  for s in (0, 9):
    for m in range(3):
      for k in ('image', 'label'):
        np.testing.assert_array_equal(steps[s][k][m], flat[3 * s + m][k][0])
  parts = [_collect(images, labels, global_batch=32, micro_steps=3, start_step=8,
                    process_index=p, process_count=2, pipeline=pipeline) for p in range(2)]
  assert parts[0][0]['label'].shape == (3, 16)
  _assert_same([{k: np.concatenate([a[k], b[k]], axis=1) for k in a}
                for a, b in zip(*parts)], steps[8:])


def test_batches_refusals(fashion_train):
  images, labels = fashion_train[0][:100], fashion_train[1][:100]
  bad = [dict(global_batch=9, process_count=2),
         dict(global_batch=8, process_index=2, process_count=2),
         dict(global_batch=8, pipeline='torch'),
         dict(global_batch=8, start_step=13),
         dict(global_batch=101),
         dict(global_batch=8, micro_steps=0),
         dict(global_batch=50, micro_steps=3)]
  for kw in bad:
    with pytest.raises(ip.DataError):
      ip.batches(images, labels, seed=0, epoch=0, **kw)  # Raised eagerly.
  with pytest.raises(ip.DataError, match='uint8'):
    ip.batches(images.astype(np.float32), labels, global_batch=8, seed=0,
               epoch=0)
