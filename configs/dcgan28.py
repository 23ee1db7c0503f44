"""DCGAN at 28×28: the conditional-DCGAN seed's layout without labels (G deconv 256 7×7 ->
128 5×5 s2 -> 1 5×5 s2, tanh; D conv 128 -> 256 (BN) -> 1 7×7); z ~ N(0, I)^100; Adam 2e-4,
beta1 0.5; batch 64; G trained twice per D update (g_steps=2); 20 epochs.

  python train.py --config=configs/dcgan28.py --workdir=runs/dcgan28
  python train.py --config=configs/dcgan28.py:mnist --workdir=runs/dcgan28_mnist

Expected: recognisable items of mixed classes after one epoch.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('dcgan')
  config.z_dim = 100
  config.num_epochs = 20
  config.g_steps = 2
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  return config
