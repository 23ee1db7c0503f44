"""CGAN, the classic Fashion-MNIST recipe (seed 000): infoGAN-style conv G/D, z ~ U(-1, 1)^62
concatenated with one-hot y; non-saturating loss; Adam(beta1=0.5), D lr 2e-4, G lr 1e-3;
batch 64, 40 epochs; one D then one G update per batch.

  python train.py --config=configs/cgan.py --workdir=runs/cgan
  python train.py --config=configs/cgan.py:mnist --workdir=runs/cgan_mnist

Expected: one recognisable class per row of samples/epoch_0001.png already.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('infogan', conditioning='concat')
  return config
