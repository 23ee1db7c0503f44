"""The default recipe: the classic conditional GAN on Fashion-MNIST (configs/cgan.py).

The recipe of `main.py --dataset fashion-mnist --gan_type CGAN --epoch 40 --batch_size 64`:
z ~ U(-1, 1)^62 concatenated with one-hot y; non-saturating loss; Adam(beta1=0.5),
D lr 2e-4, G lr 1e-3; one D then one G update per batch of 64; 40 epochs.

  python train.py --config=configs/cgan_fashion_mnist.py --workdir=runs/cgan_fashion_mnist

Expected: class-recognisable garments per row of workdir/samples/epoch_0001.png already,
sharp ones by epoch 20-40.
"""

from configs import cgan


def get_config():
  return cgan.get_config('fashion_mnist')
