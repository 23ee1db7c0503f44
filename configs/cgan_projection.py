"""Projection-discriminator cGAN (Miyato & Koyama, ICLR 2018) with spectral normalisation
(Miyato et al., ICLR 2018), class-conditional BatchNorm in G and an EMA of G for sampling
(Brock et al., ICLR 2019): the conditional GAN that superseded label concatenation and the
auxiliary classifier. Model: cgan_jax/models/sngan.py.

The settings of the SNGAN paper for its ResNets with the hinge loss (its CIFAR-10 runs, which
the projection paper's code reuses): hinge loss, Adam lr 2e-4, β1 0, β2 0.9 for both nets,
n_dis = 5 D updates per G update, batch 64, z ~ N(0, I) of 128. EMA of G's weights and
BatchNorm statistics from step 1000, decay 0.999 (BigGAN and PyTorch-StudioGAN use 0.9999
over 10^5+ G steps; this budget is 7,480 G steps, at which 0.9999 would leave 0.9999^6480 = 52 %
of the average on the step-1000 weights, 0.999 leaves 0.2 %), used by the grids, generate.py, eval.py and the periodic FID (`--generator=raw` for the
trained G). DiffAugment is off (it is for small datasets; `--config.diffaugment=
color,translation,cutout` turns it on).
Departures for 28×28×1 on a CPU: G starts at 7×7 with two up-blocks (the papers' 32×32 G:
4×4, three), D has four blocks of which the first two halve the side (as the CIFAR-10 D),
and both nets are 32 channels wide (the papers: G 256, D 128; `--config.model.g_width`,
`--config.model.d_width`): at 64 a step took 4.5x as long on this 2-core CPU (9.1 s against 2.0 s,
under load, 2026-12-02). Budget: 40 epochs, as the seed-000 CGAN it is compared with (an epoch is
60,000 images through D, so 187 G steps at n_dis 5).

  python train.py --config=configs/cgan_projection.py --workdir=runs/cgan_projection
  python eval.py --workdir=runs/cgan_projection --generator=both
  python train.py --config=configs/cgan_projection.py:cifar10 --workdir=runs/proj_cifar10

The `:cifar10` variant is the papers' CIFAR-10 setting at full width (see `_cifar10`).

Expected (measured 2026-12-03, seed 0, 10,000 samples, classifier features): epoch 1 FID 37.4,
class accuracy 13 %; epoch 20 raw G FID 5.33, 69.5 %, EMA G 7.35, 62.1 %. Class agreement of
the learning check (tests/test_learning_family.py, opt-in): 0.63 at 2,805 steps (15 epochs).
This is behind the seed-000 CGAN at equal images seen (README, "The projection cGAN against
the seed CGAN").
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('sngan', conditioning='projection', g_width=32, d_width=32)
  config.loss = 'hinge'
  config.z_dim = 128
  config.batch_size = 64
  config.n_critic = 5
  config.num_epochs = 40
  config.g_optimizer = default.optimizer(name='adam', learning_rate=2e-4, b1=0.0, b2=0.9)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=2e-4, b1=0.0, b2=0.9)
  config.ema_decay = 0.999
  config.ema_start_step = 1000
  config.diffaugment = ''
  if dataset == 'cifar10':
    _cifar10(config)
  return config


def _cifar10(config) -> None:
  """The papers' CIFAR-10 setting (`configs/cgan_projection.py:cifar10`): G from 4x4 with
  three up-blocks of 256 channels, D of four blocks of 128 (both as in SNGAN's ResNets, whose
  code the projection paper reuses), hinge, n_dis 5, Adam 2e-4 (0, 0.9), batch 64, 50,000 G
  updates (= 320 epochs of 50,000 images at n_dis 5); EMA 0.9999 from step 1000 (BigGAN) -
  at this budget 0.9999^49000 leaves under 1 % of the average on the step-1000 weights.
  Only the widths, the budget and the EMA decay differ from the Fashion-MNIST recipe.

    python train.py --config=configs/cgan_projection.py:cifar10 --workdir=runs/proj_cifar10
    python eval.py --workdir=runs/proj_cifar10 --features=inception --generator=both

  Data: TFDS cifar10, or the binary version (cifar-10-batches-bin/) in --config.data_dir or
  $CGAN_JAX_DATA_DIR. eval.py's classifier features need a CIFAR-10 classifier asset
  (`python -m cgan_jax.evaluation.classifier --dataset=cifar10`); Inception features need
  none. Not trained here: this machine has no CIFAR-10 and cannot download it; the recipe is
  tested end to end on generated CIFAR-10 files (tests/test_cifar10.py), not for its result.
  """
  config.model.g_width, config.model.d_width = 256, 128
  config.num_epochs = 320
  config.ema_decay = 0.9999
