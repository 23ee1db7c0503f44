"""GAN, unconditional, with the infoGAN-style conv nets of the classic Fashion-MNIST
comparison (the "GAN" row beside "CGAN"): same nets, optimizers and schedule as cgan.py, no label.

  python train.py --config=configs/gan.py --workdir=runs/gan
  python train.py --config=configs/gan.py:mnist --workdir=runs/gan_mnist

Expected: garment-like shapes of mixed classes at epoch 1; classes are not controllable.
"""

from configs import cgan


def get_config(dataset: str = 'fashion_mnist'):
  config = cgan.get_config(dataset)
  config.model.conditioning = 'none'
  return config
