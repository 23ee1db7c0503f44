"""pix2pix, edges -> garment (Isola et al. 2017, scaled to 32x32): the input is the Sobel edge
map of a Fashion-MNIST image, the target the image itself (paired, like edges2shoes).

U-Net G (skips, dropout 0.5 as the only noise), 16x16-pixel PatchGAN D on [input ‖ image],
L_G = GAN + 100·L1, Adam(2e-4, beta1 = 0.5) for both; 28x28 images zero-padded to 32x32.

  python train.py --config=configs/pix2pix.py --workdir=runs/pix2pix
  python train.py --config=configs/pix2pix.py:mnist --workdir=runs/pix2pix_mnist
  python train.py --config=configs/pix2pix.py:folder --config.translation.folder=DIR ...
  python eval.py --workdir=runs/pix2pix          # L1, SSIM and FID on the test split

Expected: after one epoch the outputs follow the edges with plausible fills (L1 well below
the blank and identity baselines that eval.py prints); samples/epoch_*.png rows are input,
output, target.
"""

import ml_collections

from configs import default


def translation_defaults(task: str) -> ml_collections.ConfigDict:
  """Fields every image-to-image recipe has (see cgan_jax/translation_data.py for tasks)."""
  return ml_collections.ConfigDict(dict(
      task=task,               # 'edges' | 'classes' | 'folder'
      class_a='', class_b='',  # 'classes': class names or indices of the dataset
      folder='',               # 'folder': <folder>/{train,test}/{A,B}/*.png
      paired=True,             # 'folder': A/x.png pairs with B/x.png
      channels=1,              # 'folder': 1 (grayscale) or 3 (RGB)
      image_size=32,           # square side the nets see (28x28 data is zero-padded)
      g_base=64, d_base=64,    # widths of the first G and D layers
      d_layers=1,              # PatchGAN depth: 1 -> 16x16-pixel patches at 32x32
      norm='batch',            # pix2pix: 'batch' | 'instance'
      dropout=0.5,             # pix2pix U-Net decoder dropout
      res_blocks=6,            # CycleGAN residual blocks
      l1_weight=0.0, cycle_weight=0.0, identity_weight=0.0,
      pool_size=0,             # CycleGAN replay buffer of past fakes per domain
      lr_decay_from=1.0,       # fraction of training after which lr decays linearly to 0
  ))


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.model = default.model('pix2pix')
  config.loss = 'non_saturating'
  config.g_optimizer = default.optimizer('adam', 2e-4, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer('adam', 2e-4, b1=0.5, b2=0.999)
  config.batch_size = 64
  config.num_epochs = 10
  config.translation = translation_defaults('edges')
  config.translation.l1_weight = 100.0
  if dataset == 'folder':
    config.translation.task = 'folder'
  else:
    config.dataset = dataset
  return config
