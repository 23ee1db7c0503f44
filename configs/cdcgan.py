"""Conditional DCGAN (seed 004): G concat(z 1×1×100, y 1×1×10) -> deconv 256 7×7 valid -> BN ->
lReLU -> deconv 128 5×5 s2 -> BN -> lReLU -> deconv 1 5×5 s2 -> tanh; D concat(x, 10 label
maps) -> conv 128 5×5 s2 -> lReLU -> conv 256 5×5 s2 -> BN -> lReLU -> conv 1 7×7 valid;
N(0, 0.02) init; Adam 2e-4, beta1 0.5; batch 128; 20 epochs.

  python train.py --config=configs/cdcgan.py --workdir=runs/cdcgan
  python train.py --config=configs/cdcgan.py:mnist --workdir=runs/cdcgan_mnist

Expected: one class per row from the first epoch.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = 'cdcgan'
  config.z_dim = 100
  config.batch_size = 128
  config.num_epochs = 20
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  return config
