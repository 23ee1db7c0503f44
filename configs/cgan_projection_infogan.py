"""The projection cGAN on the seed CGAN's own nets: the conditioning that superseded label
concatenation, with the architecture and optimiser of the seed-000 CGAN (configs/cgan.py)
held fixed, so that a comparison with it measures the conditioning method alone.

Model (`infogan`, `conditioning='projection'`, cgan_jax/models/infogan.py): the infoGAN-style
conv G and D layer for layer, but G conditioned by class-conditional BatchNorm (per-class γ,
β in its three BatchNorms; de Vries et al. 2017, as in Miyato & Koyama 2018 and BigGAN)
instead of a one-hot input, and D the projection discriminator (Miyato & Koyama, ICLR 2018:
logit = ψ(φ(x)) + ⟨embed(y), φ(x)⟩, φ the 1024 features after D's last lReLU) with every layer
spectrally normalised (Miyato et al., ICLR 2018) instead of D's BatchNorms, and no label maps.
Hinge loss (both papers). The seed's Adam (β1 0.5; G 1e-3, D 2e-4), z ~ U(-1, 1)^62, batch
64, one D then one G update per batch, 40 epochs. EMA of G (decay 0.999 from step 1000, as
cgan_projection) for grids, generate.py and eval.py (`--generator=raw` for the trained G).

  python train.py --config=configs/cgan_projection_infogan.py --workdir=runs/cgan_proj_infogan
  python eval.py --workdir=runs/cgan_proj_infogan --generator=both

The paper's ResNet recipe is configs/cgan_projection.py. Expected result: README, "The
projection cGAN against the seed CGAN".
"""

from configs import cgan, default


def get_config(dataset: str = 'fashion_mnist'):
  config = cgan.get_config(dataset)
  config.model = default.model('infogan', conditioning='projection')
  config.loss = 'hinge'
  config.ema_decay = 0.999
  config.ema_start_step = 1000
  return config
