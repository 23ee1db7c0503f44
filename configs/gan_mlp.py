"""GAN, fully connected: G 100 -> 256 -> 512 -> 784 tanh, D 784 -> 512 -> 256 -> 1
(LeakyReLU 0.2); z ~ N(0, I); non-saturating loss; Adam 2e-4, beta1 0.5; batch 64; ~20k updates.

  python train.py --config=configs/gan_mlp.py --workdir=runs/gan_mlp
  python train.py --config=configs/gan_mlp.py:mnist --workdir=runs/gan_mlp_mnist

Expected: blurry but recognisable digits/garments after a few epochs; some noise remains.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('mlp')
  config.z_dim = 100
  config.num_epochs = 25
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  return config
