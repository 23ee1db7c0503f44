"""The seed CGAN (configs/cgan.py) trained with the R1 fork (examples/r1/step.py).

  python train.py --config=examples/r1/config.py --workdir=runs/cgan_r1
  python train.py --config=examples/r1/config.py --workdir=runs/cgan_r1 --config.fork.gamma=1
  python benchmarks/results.py --recipes=cgan_r1 --override=fork.gamma=1
"""

import ml_collections

from configs import cgan
from examples.r1 import step


def get_config(dataset: str = 'fashion_mnist'):
  config = cgan.get_config(dataset)
  config.train_step = 'examples.r1.step'
  config.fork = ml_collections.ConfigDict(step.FIELDS)
  return config
