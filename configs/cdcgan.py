"""Conditional DCGAN (seed 004, whose training code is znxlwm's tensorflow_MNIST_cDCGAN.py):
G concat(z 1×1×100, y 1×1×10) -> deconv 256 7×7 valid -> BN -> lReLU -> deconv 128 5×5 s2 ->
BN -> lReLU -> deconv 1 5×5 s2 -> tanh; D concat(x, 10 label maps) -> conv 128 5×5 s2 -> lReLU
-> conv 256 5×5 s2 -> BN -> lReLU -> conv 1 7×7 valid; N(0, 0.02) init; Adam beta1 0.5 at
lr 2e-4 · 0.95^floor(step / 500) (the code's `exponential_decay(0.0002, global_step, 500,
0.95, staircase=True)`, global_step counting D's updates: one per step); batch 100; 30 epochs
(600 steps each). D's fakes take the real batch's labels; G's update draws fresh noise and
fresh labels (`fresh_g_inputs`), as the code does.
Departure: the code draws G's labels with `np.random.randint(0, 9)`, i.e. classes 0-8 only
(class 9 is never asked of G); we draw all 10 uniformly.
Learning check (300 steps of 64, seed 0; the decay has not begun): class agreement 0.70
(2026-12-02); with G on D's noise and labels, 0.75 (2026-12-01).

  python train.py --config=configs/cdcgan.py --workdir=runs/cdcgan
  python train.py --config=configs/cdcgan.py:mnist --workdir=runs/cdcgan_mnist

Expected: one class per row from the first epoch.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('dcgan', conditioning='concat')
  config.z_dim = 100
  config.batch_size = 100
  config.num_epochs = 30
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0002, b1=0.5, b2=0.999)
  config.lr_decay_rate = 0.95  # x0.95 every 500 steps, both optimizers (staircase)
  config.lr_decay_every_steps = 500
  config.fresh_g_inputs = True  # G: new z and uniformly drawn labels, not D's batch
  return config
