"""CycleGAN (Zhu et al. 2017): unpaired image <-> image, G: A -> B and F: B -> A, each with
a PatchGAN critic, tied by the cycle-consistency loss."""

from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from cgan_jax import input_pipeline, translation_data
from cgan_jax import translation_steps as ts
from cgan_jax.errors import UserError
from cgan_jax.evaluation import tables
from cgan_jax.kinds.gan import Row
from cgan_jax.kinds.translation import HEAD, Nets, TranslationTask
from cgan_jax.models import cyclegan, pix2pix


def _share(probs_NK: np.ndarray, target: int) -> float:
  """The share of images the classifier puts in class `target`."""
  return float(np.mean(np.argmax(probs_NK, -1) == target))


class CycleGanTask(TranslationTask):
  """G and F on unpaired class pairs; scored by the classifier's target-class share and FID."""

  table = 'cyclegan'
  schema = (*HEAD, ('share_ab', 'G(A) in class B ↑', tables.percent),
            ('share_ba', 'F(B) in class A ↑', tables.percent),
            ('fid_ab', 'FID G(A)↔B ↓', tables.fixed(2)),
            ('fid_ba', 'FID F(B)↔A ↓', tables.fixed(2)))
  plotted = (('share_ab', 'G(A) in class B ↑'), ('share_ba', 'F(B) in class A ↑'),
             ('fid_ab', 'FID G(A)↔B ↓'), ('fid_ba', 'FID F(B)↔A ↓'))
  train_step = staticmethod(ts.cyclegan_step)
  init_nets = staticmethod(ts.init_cyclegan)

  @staticmethod
  def nets(config: ml_collections.ConfigDict, channels: int, axis_name: Optional[str]) -> Nets:
    del axis_name  # instance norm throughout: no statistics across devices
    t = config.translation
    return (cyclegan.ResnetGenerator(channels, t.g_base, t.res_blocks),
            pix2pix.PatchDiscriminator(t.d_base, t.d_layers, 'instance'))

  def grid_rows(self, state: ts.TranslationState, a: jax.Array, b: jax.Array
                ) -> list[jax.Array]:
    """A | G(A) | F(G(A)) | B | F(B) | G(F(B))."""
    run = lambda name, x: self.translate(state.g_params[name], state.g_stats[name], x)
    fake_b, fake_a = run('ab', a), run('ba', b)
    return [a, fake_b, run('ba', fake_b), b, fake_a, run('ab', fake_a)]

  @staticmethod
  def caption(options: Any) -> str:
    del options
    return ('CycleGAN on the test split: share of translated images the classifier puts in '
            'the target class; FID to the real target-class images. Baseline: the '
            'untranslated images.')

  def score(self, scorer: Any, workdir: str, state: ts.TranslationState,
            reference: bool) -> list[Row]:
    """Baseline "identity" (the untranslated images), then G(A) and F(B) of the test split's
    images of class A and class B."""
    from cgan_jax.evaluation import translation
    config, step, options = self.config, int(state.step), scorer.options
    pair = translation_data.class_pair(config)
    if pair is None:
      raise UserError(f'{workdir}: CycleGAN runs on an image folder have no class to score '
                      'against; eval.py scores CycleGAN on dataset class pairs only')
    dataset = input_pipeline.canonical_name(config.dataset)
    images, labels = input_pipeline.load_split(dataset, 'test', options.data_dir,
                                               allow_download=False)
    n, side = options.num_samples, config.translation.image_size
    a_u8 = translation_data.pad_to(images[labels == pair[0]][:n], side)
    b_u8 = translation_data.pad_to(images[labels == pair[1]][:n], side)
    a, b = a_u8 / 255.0, b_u8 / 255.0

    def row(run: str, a_to_b: np.ndarray, b_to_a: np.ndarray, at_step: Optional[int]) -> Row:
      return {**scorer.header(run, config, at_step, len(a_to_b) + len(b_to_a)),
              'share_ab': _share(scorer.features(dataset, a_to_b)[1], pair[1]),
              'share_ba': _share(scorer.features(dataset, b_to_a)[1], pair[0]),
              'fid_ab': scorer.fid(dataset, a_to_b, b), 'fid_ba': scorer.fid(dataset, b_to_a, a)}

    rows = [row('baseline: identity (untranslated)', a, b, None)] if reference else []
    translate = lambda name, x: translation.translate_all(
        self, state.g_params[name], state.g_stats[name], x, options.batch_size)
    return rows + [row(workdir, translate('ab', a_u8), translate('ba', b_u8), step)]
