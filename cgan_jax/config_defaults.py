"""Every field of a training config with its default: the one home of the config schema.

Each configs/<recipe>.py starts from `get_config()` (through configs/default.py, which
re-exports this module) and overrides what differs; any field can be overridden on the
command line (--config.num_epochs=3, --config.diffaugment=color,translation on any
recipe). The checks of each field are in config_validation.py; `upgrade` brings a config
saved by an older version (a checkpoint's) to today's form.
"""

from typing import Any

import ml_collections


def optimizer(name: str, learning_rate: float, **kwargs) -> ml_collections.ConfigDict:
  """An optimizer config: a key of cgan_jax.state.OPTIMIZERS and its optax keyword arguments."""
  return ml_collections.ConfigDict(dict(name=name, learning_rate=learning_rate, **kwargs))


def model(name: str, **options) -> ml_collections.ConfigDict:
  """A model group: a family of cgan_jax.models.FAMILIES (or 'pix2pix', 'cyclegan') with every
  option it has, `options` over its defaults; each is overridable on the command line
  (--config.model.norm=layer)."""
  from cgan_jax import models  # the registry holds the options and their defaults
  return models.model_config(name, **options)


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # What is trained (all of these must match to resume a workdir).
  c.model = model('infogan', conditioning='concat')  # cgan_jax.models.FAMILIES
  c.dataset = 'fashion_mnist'       # 'fashion_mnist' | 'mnist' (TFDS names)
  c.num_train_examples = 0          # 0: the whole train split; N: its first N examples
  c.z_dim = 62
  c.loss = 'non_saturating'         # a key of cgan_jax.losses.LOSSES
  c.g_optimizer = optimizer('adam', 1e-3, b1=0.5, b2=0.999)
  c.d_optimizer = optimizer('adam', 2e-4, b1=0.5, b2=0.999)
  c.batch_size = 64                 # global batch, split over all devices and hosts
  # The update schedule: each step makes n_critic D updates (each on its own batch), then
  # g_steps G updates (with the last batch's labels and noise).
  c.n_critic = 1                    # WGAN: 5
  c.g_steps = 1                     # the DCGAN seed's tip: 2
  c.clip_critic = 0.0               # WGAN: clip every D weight to [-c, c] after each update
  c.gradient_penalty = 0.0          # WGAN-GP: lambda (10)
  c.seed = 0
  # Schedule variants of the sources (data the step reads; these defaults: the classic step).
  c.sample_fake_labels = False      # fakes' labels ~ U{0..K-1}, not the real batch's (Keras ACGAN)
  c.fresh_g_inputs = False          # each G update draws its own z and labels (cDCGAN code)
  c.split_d_step = False            # two D optimiser steps per minibatch: real, then fakes
  c.simultaneous_updates = False    # G's gradient through D as it was before D's update
  c.critic_warmup_iters = 0         # WGAN's critic warm-up: iterations (paper: 100); 0: off
  c.critic_warmup_first = 25        # critic updates per G update in the first iterations
  c.critic_warmup_every = 500       # ... and every this many iterations after (0: never)
  c.lr_decay_rate = 1.0             # learning rates x rate every lr_decay_every_steps updates
  c.lr_decay_every_steps = 1
  # Steps any GAN can switch on.
  c.ema_decay = 0.0                 # G's weights averaged (BigGAN: 0.9999); 0: no EMA
  c.ema_start_step = 0              # steps before the EMA starts averaging (it copies G)
  c.diffaugment = ''                # DiffAugment policy of D's inputs ('color,translation,cutout')
  c.train_step = ''                 # a forked step: 'module' or 'module:function' (docs/forking.md);
  # its own fields go in c.fork = ml_collections.ConfigDict(module.FIELDS)

  # How long and how it is run (free to change between resumes).
  c.num_epochs = 40
  c.data_dir = ''                   # TFDS data_dir or a folder with the four IDX files
  c.allow_download = True           # TFDS download if no local copy (connected machines)
  # 'auto': 'numpy' host batches on CPU, 'device' (the split on the accelerator) elsewhere;
  # or 'tf.data' | 'numpy' | 'device' (split on device; no TF).
  c.pipeline = 'auto'
  # 'device' pipeline: steps per dispatch (>1: a device loop); 0: 1 on CPU (convolutions run
  # slower inside a loop there), a whole epoch on GPU/TPU (chunks still stop at each log,
  # checkpoint and FID step).
  c.steps_per_dispatch = 0
  # Dispatches the host may queue ahead of the device (0: wait for each). A stop signal waits
  # for these to finish before the checkpoint: at most (dispatch_ahead + 1) dispatches.
  c.dispatch_ahead = 2
  c.dtype = 'float32'               # 'bfloat16': bf16 activations and conv/matmul inputs
  c.num_devices = 0                 # 0: all local devices
  c.log_every_steps = 100
  c.checkpoint_every_steps = 0      # 0: checkpoint at the end of each epoch only
  c.keep_checkpoints = 3
  c.sample_every_epochs = 1
  c.eval_every_steps = 0            # 0: off; N: FID of G every N steps (best-FID checkpoint kept)
  c.eval_num_samples = 10000
  c.profile_steps = 0               # N: a jax.profiler trace of N steps (TensorBoard's Profile)
  return c


# Fields that may differ between a checkpoint and the config resuming it.
RUNTIME_FIELDS = ('num_epochs', 'data_dir', 'allow_download', 'pipeline', 'steps_per_dispatch',
                  'dispatch_ahead', 'dtype',
                  'num_devices', 'log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
                  'sample_every_epochs', 'eval_every_steps', 'eval_num_samples', 'profile_steps')


def upgrade(saved: dict[str, Any]) -> dict[str, Any]:
  """A config saved by an older version (a checkpoint's) in today's form: the model group
  as models.upgrade writes it, and every field added since at its default (what its absence
  meant: the classic step, no EMA, no fork, ...)."""
  from cgan_jax import models
  config = models.upgrade(saved)
  today = get_config().to_dict()
  return {**{k: v for k, v in today.items() if k not in config}, **config}
