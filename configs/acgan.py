"""ACGAN (Odena et al.): G z ⊙ Emb(y) -> FC 128·7·7 -> up/conv 128 -> up/conv 64 -> conv 1 tanh;
D conv 16-32-64-128 (lReLU, dropout 0.25, BN) -> real/fake head + class head over the 10
classes; D minimises -(L_S + L_C), G minimises L_S-part + class NLL of its fakes;
z ~ N(0, I)^100; Adam 2e-4, beta1 0.5; batch 64; 20 epochs.

  python train.py --config=configs/acgan.py --workdir=runs/acgan
  python train.py --config=configs/acgan.py:mnist --workdir=runs/acgan_mnist

Expected: one class per row; D's class accuracy on real images (D_class_acc(x)) climbs
above 0.8 within an epoch.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = 'acgan'
  config.z_dim = 100
  config.num_epochs = 20
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  return config
