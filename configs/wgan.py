"""WGAN (weight clipping; Arjovsky, Chintala and Bottou 2017, Algorithm 1 and the reference
PyTorch code): the 28×28 DCGAN nets, critic without sigmoid, losses without log
(E[f(G(z))] - E[f(x)] and -E[f(G(z))]), every critic weight clipped to [-0.01, 0.01] after
each critic update, RMSProp lr 5e-5 as torch.optim.RMSprop's defaults (alpha 0.99, eps 1e-8
added outside the square root: optax `eps_in_sqrt=False`), n_critic = 5; batch 64.
One step = 5 critic batches + 1 G update (187 steps per Fashion-MNIST epoch).
Learning check (100 steps, seed 0, classifier FID): 117.6 -> 38.3 with torch's RMSProp
(2026-12-02); optax's default eps inside the root gave 117.6 -> 53.3 (2026-11-23).

Critic warm-up: the reference code trains the critic 100 times (not 5) before each of the
first 25 G iterations and before every 500th. It is implemented (`critic_warmup_iters`,
cgan_jax/schedules.py; each critic update still on its own batch, so a warm-up G iteration
spans 20 steps) but off by default here: with it, a run's first 500 steps make 25 G updates,
and the recipe's learning check (100 steps, tests/test_learning_family.py) would see 5.
The paper's schedule:

  python train.py --config=configs/wgan.py --workdir=runs/wgan --config.critic_warmup_iters=100

  python train.py --config=configs/wgan.py --workdir=runs/wgan
  python train.py --config=configs/wgan.py:mnist --workdir=runs/wgan_mnist

Expected: -d_loss (the Wasserstein estimate) falls steadily; samples sharpen slowly.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('dcgan')
  config.z_dim = 100
  config.loss = 'wasserstein'
  config.n_critic = 5
  config.clip_critic = 0.01
  config.num_epochs = 40
  config.g_optimizer = default.optimizer(name='rmsprop', learning_rate=5e-05, decay=0.99,
                                         eps=1e-08, eps_in_sqrt=False)
  config.d_optimizer = default.optimizer(name='rmsprop', learning_rate=5e-05, decay=0.99,
                                         eps=1e-08, eps_in_sqrt=False)
  # The paper's warm-up: 100 critic updates before G iterations 0-24 and every 500th (0: off).
  config.critic_warmup_iters = 0
  config.critic_warmup_first = 25
  config.critic_warmup_every = 500
  return config
