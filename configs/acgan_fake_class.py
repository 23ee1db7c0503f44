"""ACGAN with the Keras seed's class layout: the class head has 10 + 1 outputs, fakes are
class 10 ("fake") for D and their requested class for G. Otherwise as acgan.py.

  python train.py --config=configs/acgan_fake_class.py --workdir=runs/acgan_fake_class
  python train.py --config=configs/acgan_fake_class.py:mnist --workdir=runs/acgan_fake_class_mnist

Expected: as acgan.py.
"""

from configs import acgan


def get_config(dataset: str = 'fashion_mnist'):
  config = acgan.get_config(dataset)
  config.model = 'acgan_fake_class'
  return config
