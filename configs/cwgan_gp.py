"""Conditional WGAN-GP: the conditional DCGAN nets (labels concatenated to z and as label maps
to the critic) with a LayerNorm critic over (H, W, C) (wgan_gp.py's `model.layer_norm_axes`);
otherwise as wgan_gp.py (λ = 10, Adam(1e-4, 0.5, 0.9), n_critic = 5, batch 64).

  python train.py --config=configs/cwgan_gp.py --workdir=runs/cwgan_gp
  python train.py --config=configs/cwgan_gp.py:mnist --workdir=runs/cwgan_gp_mnist

Expected: one class per row within a few epochs.
"""

from configs import wgan_gp


def get_config(dataset: str = 'fashion_mnist'):
  config = wgan_gp.get_config(dataset)
  config.model.conditioning = 'concat'  # labels into G and, as label maps, into the critic
  return config
