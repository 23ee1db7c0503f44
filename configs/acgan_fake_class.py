"""ACGAN with the Keras seed's (seed 002) class layout and schedule: the class head has 10 + 1
outputs, fakes are class 10 ("fake") for D and their requested class for G; the fakes'
classes are drawn uniformly (`sampled_labels = np.random.randint(0, 10, ...)`), and D takes
two optimiser steps per batch, `train_on_batch(imgs, [valid, img_labels])` then
`train_on_batch(gen_imgs, [fake, fake_labels])` (`split_d_step`); G then trains on the same
noise and sampled classes. Otherwise as acgan.py.
Learning check (1,000 steps, i.e. 2 epochs of 64, seed 0): class agreement 0.90 (2026-12-02);
one joint D step on the batch's labels gave 0.94 (2026-12-01).

  python train.py --config=configs/acgan_fake_class.py --workdir=runs/acgan_fake_class
  python train.py --config=configs/acgan_fake_class.py:mnist --workdir=runs/acgan_fake_class_mnist

Expected: as acgan.py.
"""

from configs import acgan


def get_config(dataset: str = 'fashion_mnist'):
  config = acgan.get_config(dataset)
  config.model.fake_class = True
  config.split_d_step = True  # real batch, then fake batch: two D updates per step
  return config
