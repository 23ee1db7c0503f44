"""ACGAN with the Keras seed's class layout: the class head has 10 + 1 outputs, fakes are
class 10 ("fake") for D and their requested class for G. Otherwise as acgan.py.

  python train.py --config=configs/acgan_fake_class.py --workdir=runs/acgan_fake_class
  python train.py --config=configs/acgan_fake_class.py:mnist --workdir=runs/acgan_fake_class_mnist

Expected: as acgan.py.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = 'acgan_fake_class'
  config.z_dim = 100
  config.num_epochs = 20
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  return config
