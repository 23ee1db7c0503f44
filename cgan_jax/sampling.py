"""Rebuilding a trained generator from a workdir, and drawing from it."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cgan_jax import checkpointing, input_pipeline, kinds
from cgan_jax import state as state_lib


def load(workdir: str, step: int | None = None) -> tuple[state_lib.GAN, state_lib.GANState]:
  """The GAN and training state of `workdir`'s checkpoint (latest by default), on a local device."""
  ckpt = checkpointing.Checkpointer(workdir, read_only=True)
  meta = ckpt.restore_meta(step)
  config = ml_collections.ConfigDict(meta['config'])
  kinds.of(config).check_drawable(workdir, config)
  info = input_pipeline.DATASETS[input_pipeline.canonical_name(config.dataset)]
  gan = state_lib.build_gan(config, info.num_classes, axis_name=None,
                            image_shape=info.image_shape)
  template = state_lib.abstract_state(gan, info.image_shape,
                                      jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  return gan, ckpt.restore_state(template, step, extra_as_saved=True)  # no fork imported


def dataset_info(workdir: str, step: int | None = None) -> input_pipeline.DatasetInfo:
  """The dataset `workdir`'s checkpoint was trained on (its class names, image shape)."""
  meta = checkpointing.Checkpointer(workdir, read_only=True).restore_meta(step)
  return input_pipeline.DATASETS[input_pipeline.canonical_name(meta['config']['dataset'])]


def draw(gan: state_lib.GAN, state: state_lib.GANState, labels: list[int],
         seed: int = 0, generator: str = 'auto') -> np.ndarray:
  """One image per label, from noise seeded by `seed` (same seed, same images), by the EMA
  generator when the run has one (`generator`: see state.sampling_generator)."""
  g_params, g_stats = state_lib.sampling_generator(state, generator)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(labels))
  z_NZ = jax.vmap(lambda k: gan.latent(k, gan.z_dim))(keys)
  images = jax.jit(state_lib.generate, static_argnums=0)(
      gan, g_params, g_stats, z_NZ, jnp.asarray(labels, jnp.int32))
  return np.asarray(jax.device_get(images))
