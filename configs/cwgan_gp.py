"""Conditional WGAN-GP: the conditional DCGAN nets (labels concatenated to z and as label maps
to the critic) with a LayerNorm critic; otherwise as wgan_gp.py (λ = 10, Adam(1e-4, 0.5, 0.9),
n_critic = 5, batch 64).

  python train.py --config=configs/cwgan_gp.py --workdir=runs/cwgan_gp
  python train.py --config=configs/cwgan_gp.py:mnist --workdir=runs/cwgan_gp_mnist

Expected: one class per row within a few epochs.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = 'cdcgan_ln'
  config.z_dim = 100
  config.loss = 'wasserstein'
  config.n_critic = 5
  config.gradient_penalty = 10.0
  config.num_epochs = 40
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0001, b1=0.5, b2=0.9)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0001, b1=0.5, b2=0.9)
  return config
