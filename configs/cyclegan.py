"""CycleGAN, sneaker <-> ankle boot (Zhu et al. 2017, scaled to 32x32): unpaired Fashion-MNIST
classes; any two classes by name or index (--config.translation.class_a=T-shirt/top ...).

ResNet generators (6 residual blocks, instance norm), 16x16-pixel PatchGAN critics,
least-squares GAN loss, cycle loss lambda = 10, identity loss lambda = 5 (0.5·lambda_cyc),
a replay buffer of 50 past fakes per domain for the critics, Adam(2e-4, beta1 = 0.5), the
learning rate constant for the first half of training and linear to 0 over the second.

  python train.py --config=configs/cyclegan.py --workdir=runs/cyclegan
  python train.py --config=configs/cyclegan.py:mnist --config.translation.class_a=1 \
      --config.translation.class_b=7 --workdir=runs/cyclegan_mnist
  python train.py --config=configs/cyclegan.py:folder --config.translation.folder=DIR ...
  python eval.py --workdir=runs/cyclegan        # target-class share and FID, both ways

Expected: samples/epoch_*.png rows A, G(A), F(G(A)), B, F(B), G(F(B)); translated images
take the other class's shape while the cycle rows reproduce the inputs.
"""

from configs import default
from configs.pix2pix import translation_defaults


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.model = default.model('cyclegan')
  config.loss = 'least_squares'
  config.g_optimizer = default.optimizer('adam', 2e-4, b1=0.5, b2=0.999)
  config.d_optimizer = default.optimizer('adam', 2e-4, b1=0.5, b2=0.999)
  config.batch_size = 16
  config.num_epochs = 20
  t = config.translation = translation_defaults('classes')
  t.class_a, t.class_b = ('Sneaker', 'Ankle boot') if dataset == 'fashion_mnist' else ('1', '7')
  t.g_base, t.norm = 32, 'instance'
  t.cycle_weight, t.identity_weight, t.pool_size, t.lr_decay_from = 10.0, 5.0, 50, 0.5
  t.paired = False
  if dataset == 'folder':
    t.task = 'folder'
  else:
    config.dataset = dataset
  return config
