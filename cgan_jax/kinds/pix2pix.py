"""pix2pix (Isola et al. 2017): paired image -> image, a U-Net G against a PatchGAN D."""

from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from cgan_jax import input_pipeline, translation_data
from cgan_jax import translation_steps as ts
from cgan_jax.evaluation import tables
from cgan_jax.kinds.gan import Row
from cgan_jax.kinds.translation import HEAD, Nets, TranslationTask
from cgan_jax.models import pix2pix


class Pix2pixTask(TranslationTask):
  """G: A -> B on paired data; scored by L1, SSIM and FID of G(A) against B."""

  table = 'pix2pix'
  schema = (*HEAD, ('l1', 'L1 ↓', tables.fixed(4)), ('ssim', 'SSIM ↑', tables.fixed(4)),
            ('fid', 'FID ↓', tables.fixed(2)))
  plotted = (('l1', 'L1 ↓'), ('ssim', 'SSIM ↑'), ('fid', 'FID ↓'))
  train_step = staticmethod(ts.pix2pix_step)
  init_nets = staticmethod(ts.init_pix2pix)

  @staticmethod
  def nets(config: ml_collections.ConfigDict, channels: int, axis_name: Optional[str]) -> Nets:
    t = config.translation
    return (pix2pix.UNet(channels, t.g_base, t.norm, t.dropout, axis_name=axis_name),
            pix2pix.PatchDiscriminator(t.d_base, t.d_layers, t.norm, axis_name=axis_name))

  def grid_rows(self, state: ts.TranslationState, a: jax.Array, b: jax.Array
                ) -> list[jax.Array]:
    """A | G(A) | B."""
    return [a, self.translate(state.g_params, state.g_stats, a), b]

  @staticmethod
  def caption(options: Any) -> str:
    del options
    return ('pix2pix on the test split: L1 and SSIM of G(A) to the target B (pixels in '
            '[0, 1]); FID of G(A) to the targets. Baselines: the input itself, a blank image.')

  def score(self, scorer: Any, workdir: str, state: ts.TranslationState,
            reference: bool) -> list[Row]:
    """Baselines "identity" (A as is) and "blank" (all background), then G(A)."""
    from cgan_jax.evaluation import translation
    config, step = self.config, int(state.step)
    pairs, _ = translation_data.build_split(config, 'test')
    a_u8, b_u8 = translation_data.split_pair(pairs[:scorer.options.num_samples], self.channels)
    a, b = a_u8 / 255.0, b_u8 / 255.0
    dataset = None if config.translation.task == 'folder' else input_pipeline.canonical_name(
        config.dataset)

    def row(run: str, out: np.ndarray, at_step: Optional[int]) -> Row:
      return {**scorer.header(run, config, at_step, len(out)),
              'l1': float(np.mean(np.abs(out - b))),
              'ssim': float(np.mean(translation.ssim(out, b))),
              'fid': scorer.fid(dataset, out, b) if dataset else None}

    rows = []
    if reference:
      rows += [row('baseline: identity (output = input)', a, None),
               row('baseline: blank (output = 0)', np.zeros_like(b), None)]
    out = translation.translate_all(self, state.g_params, state.g_stats, a_u8,
                                    scorer.options.batch_size)
    return rows + [row(workdir, out, step)]
