"""Trains a GAN: python train.py --config=configs/cgan_fashion_mnist.py --workdir=runs/cgan

Re-running the same command on the same workdir resumes from the latest checkpoint.
Multi-process (multi-host) runs: the same command on every process, plus
--coordinator_address=HOST:PORT --num_processes=N --process_id=I (or --distributed on a
TPU pod / SLURM / Open MPI); see README "Multi-host".
"""

import os

from absl import app, flags

from cgan_jax import cli, distributed

FLAGS = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and samples.',
                            required=True)
_CONFIG = cli.define_config_file(
    'config', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                           'cgan_fashion_mnist.py'), 'Training recipe (a configs/*.py file).')
distributed.define_flags()


@distributed.exit_on_failure
@cli.user_errors_exit
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  distributed.initialize_from_flags()  # before anything touches a device; no flags: no-op
  from cgan_jax import trainer  # after flag parsing: keeps --help fast
  trainer.train_and_evaluate(_CONFIG.value, FLAGS.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
