"""Model registry: a config's `model` group (a family name and its options, e.g.
`config.model = model_config('dcgan', conditioning='concat', norm='layer')`) -> generator,
discriminator, latent prior, and the model's own conditioning terms (e.g. ACGAN's
auxiliary-classifier loss). Options are overridable on the command line
(`--config.model.norm=layer`).

Adding a GAN family means adding a file here and an entry in `FAMILIES`; nothing in the
trainer or the step changes. Every G is called as G(z_BZ, y_B, train) -> images, every D as
D(x_BHWC, y_B, train) -> DOutput; unconditional models ignore y.
"""

from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import ml_collections

from cgan_jax import kinds, losses
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


_TANH = (-1.0, 1.0)
_SIGMOID = (0.0, 1.0)


# ---------------------------------------------------------------- the families
# Each builder takes the model group (config.model: name + options, defaults filled), the
# number of classes, the batch axis name and the dataset's image shape (H, W, C).
Shape = tuple[int, int, int]


def _only(shape: Shape, family: str, side: int = 28, channels: tuple[int, ...] = (1,)) -> None:
  """Refuses a dataset whose images a fixed-size family cannot make."""
  if shape[:2] != (side, side) or shape[2] not in channels:
    made = ' or '.join(f'{side}x{side}x{c}' for c in channels)
    raise UserError(f'model {family!r} makes {made} images; this dataset\'s are '
                    f'{"x".join(map(str, shape))} (the sngan family works at any size and '
                    f'channels: configs/cgan_projection.py:cifar10)')


def _infogan(m, k, axis, shape):
  _only(shape, 'infogan')
  kw = dict(num_classes=k, conditional=m.conditioning != 'none', axis_name=axis,
            projection=m.conditioning == 'projection')
  return ModelParts(infogan.Generator(**kw),
                    infogan.Discriminator(**kw, minibatch_std=m.minibatch_std), uniform_latent,
                    kw['conditional'], _SIGMOID)


def _mlp(m, k, axis, shape):
  if m.conditioning == 'concat':  # the nets are sized by the image: any shape
    return ModelParts(mlp.ConcatGenerator(k, image_shape=shape), mlp.ConcatDiscriminator(k),
                      uniform_latent, True, _SIGMOID)
  if m.conditioning == 'embed':
    return ModelParts(
        mlp.EmbedGenerator(k, image_shape=shape, axis_name=axis,
                           output_batch_norm=m.g_output_batch_norm),
        mlp.EmbedDiscriminator(k, axis_name=axis), normal_latent, True, _TANH)
  return ModelParts(mlp.GanGenerator(image_shape=shape), mlp.GanDiscriminator(), normal_latent,
                    False, _TANH)


def _dcgan(m, k, axis, shape):
  if m.resolution == 64:  # any data, resized to 64x64
    return ModelParts(dcgan.Generator64(channels=shape[2], axis_name=axis,
                                        activation=m.g_activation),
                      dcgan.Discriminator64(axis_name=axis), normal_latent, False, _TANH,
                      image_size=64)
  _only(shape, 'dcgan', channels=(1, 3))
  conditional = m.conditioning == 'concat'
  return ModelParts(dcgan.Generator28(k, conditional, channels=shape[2], axis_name=axis),
                    dcgan.Discriminator28(k, conditional, m.norm, axis_name=axis,
                                          layer_norm_axes=m.layer_norm_axes),
                    normal_latent, conditional, _TANH)


def _acgan(m, k, axis, shape):
  _only(shape, 'acgan', channels=(1, 3))
  return ModelParts(acgan.Generator(k, channels=shape[2], axis_name=axis),
                    acgan.Discriminator(k + 1 if m.fake_class else k, axis_name=axis),
                    normal_latent, True, _TANH, aux=losses.acgan_aux(k, m.fake_class))


def _sngan(m, k, axis, shape):
  conditional = m.conditioning == 'projection'
  bottom, blocks = sngan.generator_layout(shape[0])
  if shape[1] != shape[0]:
    raise UserError(f'model \'sngan\' makes square images; this dataset\'s are '
                    f'{"x".join(map(str, shape))}')
  return ModelParts(
      sngan.Generator(k, (m.g_width,) * blocks, bottom=bottom, channels=shape[2],
                      conditional=conditional, axis_name=axis),
      sngan.ProjectionDiscriminator(k, (m.d_width,) * 4, conditional=conditional,
                                    spectral_norm=m.spectral_norm),
      normal_latent, conditional, _TANH)


def _dcgan_rules(m) -> list[str]:
  found = []
  if m['resolution'] == 64:
    found += [f'model.{f} must be {v!r} at model.resolution=64 (the 64x64 DCGAN is '
              f'unconditional, with a BatchNorm D), got {m[f]!r}'
              for f, v in (('conditioning', 'none'), ('norm', 'batch')) if m[f] != v]
  elif m['g_activation'] != 'relu':
    found.append(f"model.g_activation applies to model.resolution=64 only; the 28x28 G uses "
                 f"'relu', got {m['g_activation']!r}")
  if m['norm'] == 'batch' and m['layer_norm_axes'] != 'channels':
    found.append('model.layer_norm_axes applies to model.norm=layer only')
  return found


def _mlp_rules(m) -> list[str]:
  if m['g_output_batch_norm'] and m['conditioning'] != 'embed':
    return ['model.g_output_batch_norm applies to model.conditioning=embed only']
  return []


class Family(NamedTuple):
  """A model family: its builder, its options ({name: (default, allowed values or None for
  any positive integer)}), the rules between options, and its display label."""
  build: Callable[[ml_collections.ConfigDict, int, Optional[str], Shape], ModelParts]
  options: dict[str, tuple[Any, Optional[tuple]]]
  label: Callable[[dict], str]
  rules: Callable[[dict], list[str]] = lambda m: []

  @property
  def defaults(self) -> dict[str, Any]:
    return {k: d for k, (d, _) in self.options.items()}


_BOOL = (False, True)
# One registry of every noise-to-image model family. The display labels are the names these
# models had before they took options (infogan_cgan, cdcgan_ln, ...), so results tables and
# eval.py's rows read as before.
FAMILIES: dict[str, Family] = {
    # The classic Fashion-MNIST comparison (seed 000): infoGAN-style conv nets, the label as
    # a one-hot concatenated to z and as label maps to D's input.
    # conditioning=projection: the same layers with class-conditional BN in G and a
    # spectrally normalised projection D (Miyato & Koyama 2018): the modern conditioning on
    # the seed's nets (configs/cgan_projection_infogan.py).
    # minibatch_std=G: D sees the minibatch stddev of groups of G examples (Karras et al. 2018).
    'infogan': Family(_infogan, {'conditioning': ('concat', ('none', 'concat', 'projection')),
                                 'minibatch_std': (0, (0, 2, 4, 8))},
                      lambda m: {'concat': 'infogan_cgan', 'none': 'infogan_gan'}.get(
                          m['conditioning'], f'infogan_{m["conditioning"]}')),
    # Fully connected: unconditional, label concatenated, or label embedding x input.
    'mlp': Family(_mlp, {'conditioning': ('none', ('none', 'concat', 'embed')),
                         'g_output_batch_norm': (False, _BOOL)},  # seed 001's BN after tanh
                  lambda m: 'mlp_gan' if m['conditioning'] == 'none'
                  else f'mlp_cgan_{m["conditioning"]}', _mlp_rules),
    # DCGAN: the 64x64 all-conv nets, or the 28x28 ones (labels to G and, as label maps, to D);
    # norm=layer: a LayerNorm critic (no BatchNorm) for gradient penalties.
    'dcgan': Family(_dcgan, {'resolution': (28, (28, 64)),
                             'conditioning': ('none', ('none', 'concat')),
                             'norm': ('batch', ('batch', 'layer')),
                             'layer_norm_axes': ('channels', tuple(dcgan.LAYER_NORM_AXES)),
                             'g_activation': ('relu', tuple(dcgan.G_ACTIVATIONS))},
                    lambda m: 'dcgan64' if m['resolution'] == 64 else
                    ('cdcgan' if m['conditioning'] == 'concat' else 'dcgan28')
                    + ('_ln' if m['norm'] == 'layer' else ''), _dcgan_rules),
    # Auxiliary classifier: K classes (Odena et al.) or K + 1 with a "fake" class (Keras).
    'acgan': Family(_acgan, {'conditioning': ('auxiliary', ('auxiliary',)),
                             'fake_class': (False, _BOOL)},
                    lambda m: 'acgan_fake_class' if m['fake_class'] else 'acgan'),
    # ResNets (Miyato et al. 2018): projection D + class-conditional BN G, or both
    # unconditional; D spectrally normalised unless spectral_norm=False (an ablation).
    'sngan': Family(_sngan, {'conditioning': ('projection', ('none', 'projection')),
                             'g_width': (64, None), 'd_width': (64, None),
                             'spectral_norm': (True, _BOOL)},
                    lambda m: 'sngan_projection' if m['conditioning'] == 'projection'
                    else 'sngan'),
}

# The registry names before models took options -> (family, options). Checkpoints written
# then are upgraded on reading (`upgrade`); the names stay the display labels.
LEGACY_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    'infogan_cgan': ('infogan', {'conditioning': 'concat'}),
    'infogan_gan': ('infogan', {'conditioning': 'none'}),
    'mlp_gan': ('mlp', {'conditioning': 'none'}),
    'mlp_cgan_concat': ('mlp', {'conditioning': 'concat'}),
    'mlp_cgan_embed': ('mlp', {'conditioning': 'embed'}),
    'dcgan64': ('dcgan', {'resolution': 64}),
    'dcgan28': ('dcgan', {}),
    'cdcgan': ('dcgan', {'conditioning': 'concat'}),
    'dcgan28_ln': ('dcgan', {'norm': 'layer'}),
    'cdcgan_ln': ('dcgan', {'conditioning': 'concat', 'norm': 'layer'}),
    'acgan': ('acgan', {}),
    'acgan_fake_class': ('acgan', {'fake_class': True}),
    'sngan_projection': ('sngan', {'conditioning': 'projection'}),
    'sngan': ('sngan', {'conditioning': 'none'}),
    'pix2pix': ('pix2pix', {}),
    'cyclegan': ('cyclegan', {}),
}
# Top-level fields of those configs that were model options -> the option's name now.
_LEGACY_FIELDS = {'critic_layer_norm': 'layer_norm_axes', 'g_activation': 'g_activation',
                  'g_output_batch_norm': 'g_output_batch_norm', 'g_width': 'g_width',
                  'd_width': 'd_width'}


def model_config(name: str, **options) -> ml_collections.ConfigDict:
  """config.model for family `name`: every option of the family, `options` over its defaults
  (so each is overridable on the command line: --config.model.norm=layer)."""
  family = FAMILIES.get(name)
  if family is None and name not in kinds.KINDS:
    raise UserError(f'unknown model family {name!r}; known: {", ".join(known_families())}')
  defaults = family.defaults if family else {}
  unknown = sorted(set(options) - set(defaults))
  if unknown:
    raise UserError(f'model {name!r} has no option {", ".join(unknown)}; its options: '
                    f'{", ".join(defaults) or "none"}')
  return ml_collections.ConfigDict({'name': name, **defaults, **options})


def from_legacy_name(name: str) -> ml_collections.ConfigDict:
  """config.model of a model by its display label / pre-options registry name."""
  if name not in LEGACY_NAMES:
    raise UserError(f'unknown model {name!r}; known: {", ".join(sorted(LEGACY_NAMES))}')
  family, options = LEGACY_NAMES[name]
  return model_config(family, **options)


def known_families() -> list[str]:
  return sorted([*FAMILIES, *kinds.KINDS])


def _as_dict(model: Any) -> Any:
  return model.to_dict() if isinstance(model, ml_collections.ConfigDict) else model


def problems(model: Any) -> list[str]:
  """What is wrong with a config.model group, one phrase each (empty: valid)."""
  m = _as_dict(model)
  if isinstance(m, str):
    if m in LEGACY_NAMES:
      return [f'model must be a config group (a family name and its options), got {m!r}; '
              f'that model is now {from_legacy_name(m).to_dict()}']
    return [f'unknown model {m!r}: config.model is a group, a family name (one of '
            f'{", ".join(known_families())}) and its options']
  if not isinstance(m, dict) or not isinstance(m.get('name'), str):
    return [f'model must be a config group with a name (one of {", ".join(known_families())}),'
            f' got {m!r}']
  name = m['name']
  if name in kinds.KINDS:  # families of their own kind (cgan_jax/kinds/)
    extra = sorted(set(m) - {'name'})
    return [f'model {name!r} has no option {", ".join(extra)} (its options are in '
            'config.translation)'] if extra else []
  if name not in FAMILIES:
    return [f'unknown model family {name!r}; known: {", ".join(known_families())}']
  family, found = FAMILIES[name], []
  for option in sorted(set(m) - {'name'} - set(family.options)):
    found.append(f'model {name!r} has no option {option!r}; its options: '
                 f'{", ".join(family.options)}')
  for option, (default, allowed) in family.options.items():
    value = m.get(option, default)
    if allowed is None:
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        found.append(f'model.{option} must be a positive integer, got {value!r}')
    elif value not in allowed or type(value) is not type(default):
      found.append(f'model.{option} must be one of {", ".join(map(repr, allowed))}, '
                   f'got {value!r}')
  if found:
    return found
  return family.rules({**family.defaults, **m})


def family(config: ml_collections.ConfigDict) -> str:
  """The family name of config.model (UserError if config.model is not a valid group)."""
  found = problems(config.model)
  if found:
    raise UserError(f'invalid config: {"; ".join(found)}')
  return config.model.name


def label(config_or_model: Any) -> str:
  """The display name of a config's model (results tables, eval.py rows): the registry name
  it had before models took options (cdcgan_ln, sngan_projection, ...)."""
  m = config_or_model
  if isinstance(m, ml_collections.ConfigDict) and 'name' not in m:
    m = m.model
  elif isinstance(m, dict) and 'name' not in m and 'model' in m:
    m = m['model']
  m = _as_dict(m)
  if isinstance(m, str):
    return m
  family = FAMILIES.get(m['name'])
  if family is None:
    return m['name']
  return family.label({**family.defaults, **m})


def upgrade(config: dict[str, Any]) -> dict[str, Any]:
  """A config (as a dict) written by an older version -> today's form. A registry name
  (before models took options) becomes config.model's family and options, and the top-level
  model options move into it (those the family does not have had no effect and are dropped);
  a model group lacking an option its family has gained since gets the option's default (the
  behaviour it was trained with). Anything else is returned as it is; an unknown name is left
  for the validation to refuse."""
  old = config.get('model')
  if isinstance(old, dict) and old.get('name') in FAMILIES:
    return {**config, 'model': {'name': old['name'], **FAMILIES[old['name']].defaults, **old}}
  if not isinstance(old, str) or old not in LEGACY_NAMES:
    return config
  new = {k: v for k, v in config.items() if k not in _LEGACY_FIELDS}
  family_name, options = LEGACY_NAMES[old]
  owned = FAMILIES[family_name].options if family_name in FAMILIES else {}
  moved = {_LEGACY_FIELDS[k]: v for k, v in config.items()
           if k in _LEGACY_FIELDS and _LEGACY_FIELDS[k] in owned}
  new['model'] = model_config(family_name, **{**moved, **options}).to_dict()
  return new


def build(config: ml_collections.ConfigDict, num_classes: int, axis_name: Optional[str],
          image_shape: Shape = (28, 28, 1)) -> ModelParts:
  """Instantiates config.model (family and options) for a dataset of `image_shape` images;
  UserError naming every bad option, or the shape a fixed-size family cannot make."""
  name = family(config)
  if name not in FAMILIES:
    raise UserError(f'model {name!r} translates images; it is built by cgan_jax.tasks')
  m = ml_collections.ConfigDict({**FAMILIES[name].defaults, **config.model.to_dict()})
  return FAMILIES[name].build(m, num_classes, axis_name, tuple(image_shape))
