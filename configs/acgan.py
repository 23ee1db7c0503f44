"""ACGAN (Odena, Olah and Shlens 2017): G z ⊙ Emb(c) -> FC 128·7·7 -> up/conv 128 -> up/conv 64
-> conv 1 tanh; D conv 16-32-64-128 (lReLU, dropout 0.25, BN) -> real/fake head + class head
over the 10 classes; D minimises -(L_S + L_C), G minimises L_S-part + class NLL of its fakes;
z ~ N(0, I)^100 and the fakes' class c ~ U{0..9}, drawn apart from the real batch's labels
(`sample_fake_labels`; the paper's c ~ p_c and the Keras seed's `sampled_labels`), G's update
on the same z and c as D's fakes (as the Keras seed's `combined.train_on_batch([noise,
sampled_labels], ...)`); Adam 2e-4, beta1 0.5; batch 64; 20 epochs.
D takes one optimiser step per batch on L_S + L_C over real and fakes together, the paper's
objective; the Keras seed (seed 002) steps D twice, on the real batch then on the fakes:
that is configs/acgan_fake_class.py's schedule (`split_d_step`), which this recipe could turn
on with --config.split_d_step=True.

  python train.py --config=configs/acgan.py --workdir=runs/acgan
  python train.py --config=configs/acgan.py:mnist --workdir=runs/acgan_mnist

Expected: one class per row; D's class accuracy on real images (D_class_acc(x)) climbs
above 0.8 within an epoch.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('acgan')
  config.z_dim = 100
  config.num_epochs = 20
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.sample_fake_labels = True  # fakes' classes ~ U{0..9}, not the real batch's
  config.split_d_step = False  # one D step on real + fakes (the Keras seed: True)
  return config
