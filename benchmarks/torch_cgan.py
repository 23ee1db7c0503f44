"""The seed-000 CGAN written the way a PyTorch user writes it: the side-by-side peer.

Same layers as cgan_jax/models/infogan.py (G: FC 1024-BN-ReLU, FC 7*7*128-BN-ReLU,
deconv 64 4x4/2-BN-ReLU, deconv 1 4x4/2-sigmoid; D: conv 64 4x4/2-lReLU, conv 128
4x4/2-BN-lReLU, FC 1024-BN-lReLU, FC 1), N(0, 0.02) init, BatchNorm momentum 0.1
(= decay 0.9), eps 1e-5, non-saturating loss on logits, Adam(b1=0.5) with D lr 2e-4 and
G lr 1e-3, batch 64, one D then one G update per batch on one forward G(z) (detached for
D's loss), as PyTorch's DCGAN example does. The dataset held in memory as a tensor on the
device, all cores (torch.set_num_threads), losses fetched once per timed run: no handicaps.

Modes (MODES), for a fair comparison with XLA, which computes f32 convolutions and dots in
TF32 on Ampere/Hopper by default:
  eager          PyTorch's defaults (f32 matmuls exact; cuDNN convolutions may use TF32:
                 torch.backends.cudnn.allow_tf32 is True by default)
  compile        torch.compile of G and D, defaults otherwise
  eager_tf32     matmul and cuDNN TF32 allowed, cudnn.benchmark on (on CPU: = eager)
  autocast_bf16  forward and losses under torch.autocast(bfloat16) (f32 weights and Adam)
Each mode's settings are set around its own steps and restored after (`Trainer.settings`):
runners interleaved in one process do not leak them into each other.

  python benchmarks/torch_cgan.py --steps=20 [--mode=eager_tf32]   # prints s/step, img/s

benchmarks/train_benchmark.py imports it to time both frameworks in one process.
`--model=mlp_cgan_concat` is the peer of configs/cgan_mlp_concat.py instead (G(z ‖ y) and
D(x ‖ y) with one hidden layer of 128, Xavier init, z ~ U(-1, 1)^100, Adam 1e-3).
"""

import argparse
import contextlib
import os
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

NUM_CLASSES, Z_DIM = 10, 62


def _init(module: nn.Module) -> None:
  if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
    nn.init.normal_(module.weight, 0.0, 0.02)
    nn.init.zeros_(module.bias)


class Generator(nn.Module):

  def __init__(self):
    super().__init__()
    self.fc = nn.Sequential(
        nn.Linear(Z_DIM + NUM_CLASSES, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
        nn.Linear(1024, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU())
    self.deconv = nn.Sequential(
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Sigmoid())
    self.apply(_init)

  def forward(self, z, y_onehot):
    h = self.fc(torch.cat([z, y_onehot], 1))
    return self.deconv(h.view(-1, 128, 7, 7))


class Discriminator(nn.Module):

  def __init__(self):
    super().__init__()
    self.conv = nn.Sequential(
        nn.Conv2d(1 + NUM_CLASSES, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2))
    self.fc = nn.Sequential(
        nn.Linear(128 * 7 * 7, 1024), nn.BatchNorm1d(1024), nn.LeakyReLU(0.2),
        nn.Linear(1024, 1))
    self.apply(_init)

  def forward(self, x, y_fill):
    h = self.conv(torch.cat([x, y_fill], 1))
    return self.fc(h.flatten(1))[:, 0]


def _xavier(module: nn.Module) -> None:
  if isinstance(module, nn.Linear):
    nn.init.xavier_normal_(module.weight)
    nn.init.zeros_(module.bias)


class MlpGenerator(nn.Module):
  """G(z ‖ onehot y): one hidden layer of 128, sigmoid images."""

  def __init__(self, z_dim: int = 100):
    super().__init__()
    self.net = nn.Sequential(nn.Linear(z_dim + NUM_CLASSES, 128), nn.ReLU(),
                             nn.Linear(128, 784), nn.Sigmoid())
    self.apply(_xavier)

  def forward(self, z, y_onehot):
    return self.net(torch.cat([z, y_onehot], 1)).view(-1, 1, 28, 28)


class MlpDiscriminator(nn.Module):
  """D(x ‖ onehot y): one hidden layer of 128."""

  def __init__(self):
    super().__init__()
    self.net = nn.Sequential(nn.Linear(784 + NUM_CLASSES, 128), nn.ReLU(), nn.Linear(128, 1))
    self.apply(_xavier)

  def forward(self, x, y_onehot):
    return self.net(torch.cat([x.flatten(1), y_onehot], 1))[:, 0]


# model name -> (G, D, z_dim, (G lr, betas), (D lr, betas), D takes label maps)
PEERS = {
    'infogan_cgan': (Generator, Discriminator, Z_DIM, (1e-3, (0.5, 0.999)),
                     (2e-4, (0.5, 0.999)), True),
    'mlp_cgan_concat': (MlpGenerator, MlpDiscriminator, 100, (1e-3, (0.9, 0.999)),
                        (1e-3, (0.9, 0.999)), False),
}


# mode -> (torch.compile, TF32 + cudnn.benchmark, autocast dtype)
MODES = {
    'eager': (False, False, None),
    'compile': (True, False, None),
    'eager_tf32': (False, True, None),
    'autocast_bf16': (False, False, torch.bfloat16),
}
_FLAGS = ('cuda.matmul.allow_tf32', 'cudnn.allow_tf32', 'cudnn.benchmark')


def _flag(name: str, value: bool | None = None) -> bool:
  """Reads (or sets, then reads) torch.backends.<name>."""
  *path, attr = name.split('.')
  owner = torch.backends
  for p in path:
    owner = getattr(owner, p)
  if value is not None:
    setattr(owner, attr, value)
  return bool(getattr(owner, attr))


# PyTorch's settings as this process found them: the non-TF32 modes run with these.
_DEFAULTS = {name: _flag(name) for name in _FLAGS}


class Trainer:
  """Models, optimizers and the in-memory dataset; `step(i)` trains on batch i of an epoch.

  device: 'cpu' or 'cuda' (models and the dataset live there). mode: a key of MODES
  ('compile' wraps G and D in `torch.compile`: on CPU it needs a C++ compiler; the first
  steps compile); `compile=True` is mode='compile'.
  """

  def __init__(self, images_NHW: np.ndarray, labels_N: np.ndarray, batch_size: int = 64,
               seed: int = 0, threads: int = 0, model: str = 'infogan_cgan',
               device: str = 'cpu', compile: bool = False, mode: str = 'eager'):
    mode = 'compile' if compile else mode
    if mode not in MODES:
      raise ValueError(f'unknown mode {mode!r}; known: {", ".join(MODES)}')
    self.mode = mode
    compile, tf32, self.autocast_dtype = MODES[mode]
    self._flags = {name: True if tf32 else _DEFAULTS[name] for name in _FLAGS}
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count())
    self.device = torch.device(device)
    g_cls, d_cls, self.z_dim, (g_lr, g_betas), (d_lr, d_betas), self.label_maps = PEERS[model]
    G, D = (g_cls(self.z_dim) if g_cls is MlpGenerator else g_cls()), d_cls()
    G, D = G.to(self.device), D.to(self.device)
    self.G_opt = torch.optim.Adam(G.parameters(), lr=g_lr, betas=g_betas)
    self.D_opt = torch.optim.Adam(D.parameters(), lr=d_lr, betas=d_betas)
    self.G, self.D = (torch.compile(G), torch.compile(D)) if compile else (G, D)
    self.images = torch.from_numpy(np.asarray(images_NHW, np.float32)
                                   .reshape(len(images_NHW), 1, 28, 28) / 255.0).to(self.device)
    self.labels = torch.from_numpy(np.asarray(labels_N, np.int64)).to(self.device)
    self.batch_size = batch_size
    self.order = torch.randperm(len(self.labels), device=self.device)

  @contextlib.contextmanager
  def settings(self):
    """This mode's backend flags, set for the block and restored after it."""
    before = {name: _flag(name) for name in _FLAGS}
    try:
      for name, value in self._flags.items():
        _flag(name, value)
      yield
    finally:
      for name, value in before.items():
        _flag(name, value)

  def precision(self) -> dict:
    """The precision settings in effect while this mode's steps run (for the JSON)."""
    with self.settings():
      flags = {name.replace('.', '_'): _flag(name) for name in _FLAGS}
      autocast = str(self.autocast_dtype).replace('torch.', '') if self.autocast_dtype else None
      return dict(mode=self.mode, device=self.device.type, **flags, autocast_dtype=autocast,
                  float32_matmul_precision=torch.get_float32_matmul_precision(),
                  compiled=MODES[self.mode][0])

  def _autocast(self):
    return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                          enabled=self.autocast_dtype is not None)

  def step(self, i: int) -> dict[str, torch.Tensor]:
    """One D then one G update; G runs forward once (its graph serves G's loss too)."""
    rows = self.order[(i * self.batch_size) % (len(self.order) - self.batch_size + 1):][
        :self.batch_size]
    x, y = self.images[rows], self.labels[rows]
    b = len(y)
    y_onehot = F.one_hot(y, NUM_CLASSES).float()
    y_fill = (y_onehot[:, :, None, None].expand(b, NUM_CLASSES, 28, 28) if self.label_maps
              else y_onehot)
    z = torch.rand(b, self.z_dim, device=self.device) * 2 - 1
    ones, zeros = torch.ones(b, device=self.device), torch.zeros(b, device=self.device)

    with self._autocast():  # forward and losses only (autocast's recipe); a no-op in f32
      fake = self.G(z, y_onehot)
      d_loss = (F.binary_cross_entropy_with_logits(self.D(x, y_fill), ones)
                + F.binary_cross_entropy_with_logits(self.D(fake.detach(), y_fill), zeros))
    self.D_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    self.D_opt.step()

    self.G_opt.zero_grad(set_to_none=True)
    with self._autocast():
      g_loss = F.binary_cross_entropy_with_logits(self.D(fake, y_fill), ones)
    g_loss.backward()
    self.G_opt.step()
    return {'d_loss': d_loss.detach(), 'g_loss': g_loss.detach()}

  def time_steps(self, first: int, n: int) -> float:
    """Seconds for steps first..first+n-1, losses fetched at the end (as a loop that logs
    every so many steps does; the JAX side is timed the same way), under this mode's
    settings."""
    with self.settings():
      start = time.perf_counter()
      for i in range(first, first + n):
        losses = self.step(i)
      float(losses['d_loss'])  # waits for the device
      return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--model', choices=sorted(PEERS), default='infogan_cgan')
  parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
  parser.add_argument('--mode', choices=list(MODES), default='eager')
  parser.add_argument('--compile', action='store_true', help="= --mode=compile")
  args = parser.parse_args()
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from cgan_jax import input_pipeline  # the same IDX reader as the JAX side
  images, labels = input_pipeline.load_split('fashion_mnist', 'train')
  trainer = Trainer(images[..., 0], labels, model=args.model, device=args.device,
                    compile=args.compile, mode=args.mode)
  trainer.time_steps(0, 3)  # warm-up
  times = [trainer.time_steps(3 + r * args.steps, args.steps) / args.steps
           for r in range(args.repeats)]
  s = float(np.median(times))
  print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {trainer.mode}: '
        f'{s:.3f} s/step, {64 / s:.1f} img/s; {trainer.precision()}')


if __name__ == '__main__':
  main()
