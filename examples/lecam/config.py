"""The seed CGAN (configs/cgan.py) trained with the LeCam fork (examples/lecam/step.py).

  python train.py --config=examples/lecam/config.py --workdir=runs/cgan_lecam
  python benchmarks/results.py --recipes=cgan_lecam --override=fork.weight=0.1
"""

import ml_collections

from configs import cgan
from examples.lecam import step


def get_config(dataset: str = 'fashion_mnist'):
  config = cgan.get_config(dataset)
  config.train_step = 'examples.lecam.step'
  config.fork = ml_collections.ConfigDict(step.FIELDS)
  return config
