"""WGAN (weight clipping): the 28×28 DCGAN nets, critic without sigmoid, losses without log
(E[f(G(z))] - E[f(x)] and -E[f(G(z))]), every critic weight clipped to [-0.01, 0.01] after
each critic update, RMSProp lr 5e-5 (decay 0.99, as torch's default), n_critic = 5; batch 64.
One step = 5 critic batches + 1 G update (187 steps per Fashion-MNIST epoch).

  python train.py --config=configs/wgan.py --workdir=runs/wgan
  python train.py --config=configs/wgan.py:mnist --workdir=runs/wgan_mnist

Expected: -d_loss (the Wasserstein estimate) falls steadily; samples sharpen slowly.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = 'dcgan28'
  config.z_dim = 100
  config.loss = 'wasserstein'
  config.n_critic = 5
  config.clip_critic = 0.01
  config.num_epochs = 40
  config.g_optimizer = default.optimizer(name='rmsprop', learning_rate=5e-05, decay=0.99, eps=1e-08)
  config.d_optimizer = default.optimizer(name='rmsprop', learning_rate=5e-05, decay=0.99, eps=1e-08)
  return config
