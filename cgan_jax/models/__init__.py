"""Model registry: a config's `model` name -> generator, discriminator, latent prior, and the
model's own conditioning terms (e.g. ACGAN's auxiliary-classifier loss).

Adding a GAN family means adding a file here and entries in `MODELS`; nothing in the trainer
or the step changes. Every G is called as G(z_BZ, y_B, train) -> images, every D as
D(x_BHWC, y_B, train) -> DOutput; unconditional models ignore y.
"""

from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import ml_collections

from cgan_jax import losses
from cgan_jax.errors import UserError
from cgan_jax.models import acgan, dcgan, infogan, mlp, sngan
from cgan_jax.models.common import DOutput, normal_latent, uniform_latent  # noqa: F401


class ModelParts(NamedTuple):
  generator: nn.Module
  discriminator: nn.Module
  latent: Callable[[jax.Array, int], jax.Array]  # (key, z_dim) -> one z
  conditional: bool
  pixel_range: tuple[float, float]  # G's output range; real images are scaled to it
  aux: losses.AuxLoss = losses.NO_AUX  # extra D/G terms over D's class logits
  image_size: Optional[int] = None  # square side G/D work at; None: the dataset's own


Builder = Callable[[ml_collections.ConfigDict, int, Optional[str]], ModelParts]
_TANH = (-1.0, 1.0)
_SIGMOID = (0.0, 1.0)


def _infogan(conditional: bool) -> Builder:
  def build(config, k, axis):
    kw = dict(num_classes=k, conditional=conditional, axis_name=axis)
    return ModelParts(infogan.Generator(**kw), infogan.Discriminator(**kw), uniform_latent,
                      conditional, _SIGMOID)
  return build


# Model options a recipe may set (absent: these defaults, the models as they were first
# written): config field -> (default, allowed values).
MODEL_OPTIONS = {
    'critic_layer_norm': ('channels', tuple(dcgan.LAYER_NORM_AXES)),  # *_ln critics
    'g_activation': ('relu', tuple(dcgan.G_ACTIVATIONS)),  # dcgan64's G
    'g_output_batch_norm': (False, (False, True)),  # mlp_cgan_embed's G
    'g_width': (64, None),  # sngan_*: channels of G's blocks (None: any positive integer)
    'd_width': (64, None),  # sngan_*: channels of D's blocks
}


def option(config: ml_collections.ConfigDict, name: str):
  default, allowed = MODEL_OPTIONS[name]
  value = config.get(name, default)
  if allowed is None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise UserError(f'{name} must be a positive integer, got {value!r}')
  elif value not in allowed:
    raise UserError(f'{name} must be one of {", ".join(map(repr, allowed))}, got {value!r}')
  return value


def _dcgan28(conditional: bool, norm: str) -> Builder:
  def build(config, k, axis):
    ln_axes = option(config, 'critic_layer_norm') if norm == 'layer' else 'channels'
    return ModelParts(dcgan.Generator28(k, conditional, axis_name=axis),
                      dcgan.Discriminator28(k, conditional, norm, axis_name=axis,
                                            layer_norm_axes=ln_axes),
                      normal_latent, conditional, _TANH)
  return build


def _acgan(fake_class: bool) -> Builder:
  def build(config, k, axis):
    return ModelParts(acgan.Generator(k, axis_name=axis),
                      acgan.Discriminator(k + 1 if fake_class else k, axis_name=axis),
                      normal_latent, True, _TANH, aux=losses.acgan_aux(k, fake_class))
  return build


def _sngan(conditional: bool) -> Builder:
  def build(config, k, axis):
    g, d = option(config, 'g_width'), option(config, 'd_width')
    return ModelParts(
        sngan.Generator(k, (g, g), bottom=7, conditional=conditional, axis_name=axis),
        sngan.ProjectionDiscriminator(k, (d,) * 4, conditional=conditional),
        normal_latent, conditional, _TANH)
  return build


MODELS: dict[str, Builder] = {
    # The classic Fashion-MNIST comparison (seed 000): infoGAN-style conv nets.
    'infogan_cgan': _infogan(conditional=True),
    'infogan_gan': _infogan(conditional=False),
    # Fully connected.
    'mlp_gan': lambda c, k, a: ModelParts(mlp.GanGenerator(), mlp.GanDiscriminator(),
                                          normal_latent, False, _TANH),
    'mlp_cgan_concat': lambda c, k, a: ModelParts(
        mlp.ConcatGenerator(k), mlp.ConcatDiscriminator(k), uniform_latent, True, _SIGMOID),
    'mlp_cgan_embed': lambda c, k, a: ModelParts(
        mlp.EmbedGenerator(k, axis_name=a, output_batch_norm=option(c, 'g_output_batch_norm')),
        mlp.EmbedDiscriminator(k, axis_name=a),
        normal_latent, True, _TANH),
    # DCGAN family; the *_ln critics (LayerNorm, no BatchNorm) are for gradient penalties.
    'dcgan64': lambda c, k, a: ModelParts(dcgan.Generator64(axis_name=a,
                                                            activation=option(c, 'g_activation')),
                                          dcgan.Discriminator64(axis_name=a),
                                          normal_latent, False, _TANH, image_size=64),
    'dcgan28': _dcgan28(conditional=False, norm='batch'),
    'cdcgan': _dcgan28(conditional=True, norm='batch'),
    'dcgan28_ln': _dcgan28(conditional=False, norm='layer'),
    'cdcgan_ln': _dcgan28(conditional=True, norm='layer'),
    # Auxiliary classifier: K classes (Odena et al.) or K + 1 with a "fake" class (Keras).
    'acgan': _acgan(fake_class=False),
    'acgan_fake_class': _acgan(fake_class=True),
    # Spectral-norm ResNets (Miyato et al. 2018): projection D and class-conditional BN G, or
    # both unconditional (plain BN G, no projection).
    'sngan_projection': _sngan(conditional=True),
    'sngan': _sngan(conditional=False),
}


def build(config: ml_collections.ConfigDict, num_classes: int,
          axis_name: Optional[str]) -> ModelParts:
  """Instantiates the model named by `config.model`."""
  if config.model not in MODELS:
    raise UserError(f'unknown model {config.model!r}; known models: {", ".join(sorted(MODELS))}')
  return MODELS[config.model](config, num_classes, axis_name)
