"""DCGAN at 64×64 (the seed's layout): G z 1×1×100 -> 1024 (4×4) -> 512 -> 256 -> 128 -> 1 (64×64,
tanh); D 128 -> 256 -> 512 -> 1024 -> 1; BN on every layer but the outputs; LeakyReLU in D;
real images resized 28 -> 64; Adam 2e-4, beta1 0.5; batch 64; G trained twice per D update
(the seed's tip, g_steps=2); 15 epochs.  Heavy: ~20 GFLOP per image per step; use a GPU.

  python train.py --config=configs/dcgan.py --workdir=runs/dcgan
  python train.py --config=configs/dcgan.py:mnist --workdir=runs/dcgan_mnist

Expected: sharp 64×64 samples after a few epochs (GPU).
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = 'dcgan64'
  config.z_dim = 100
  config.num_epochs = 15
  config.g_steps = 2
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  return config
