"""DCGAN at 64×64 (the seed's layout): G z 1×1×100 -> 1024 (4×4) -> 512 -> 256 -> 128 -> 1 (64×64,
tanh); D 128 -> 256 -> 512 -> 1024 -> 1; BN on every layer but the outputs; LeakyReLU in D;
real images resized 28 -> 64; Adam 2e-4, beta1 0.5; batch 64; G trained twice per D update
(seed 003's tip, g_steps=2), each G update on fresh noise as the seed's code draws it
(`fresh_g_inputs`); 15 epochs.  Heavy: ~20 GFLOP per image per step; use a GPU.
Departure: G keeps ReLU (Radford et al.'s DCGAN generator) although seed 003's tip says
LeakyReLU works better ("使用lrelu效果会更好"): the tip gives no figure, and a 64×64 comparison
is not affordable on the CPU this was written on (unmeasured). Seed 003's choice is one
override: --config.model.g_activation=leaky_relu (LeakyReLU 0.2 in every G layer but the output).

  python train.py --config=configs/dcgan.py --workdir=runs/dcgan
  python train.py --config=configs/dcgan.py:mnist --workdir=runs/dcgan_mnist

Expected: sharp 64×64 samples after a few epochs (GPU).
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('dcgan', resolution=64)
  config.z_dim = 100
  config.num_epochs = 15
  config.g_steps = 2
  config.fresh_g_inputs = True  # each of G's two updates draws its own z
  config.model.g_activation = 'relu'  # seed 003's tip: 'leaky_relu' (see the docstring)
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  return config
