"""Shared plumbing for the thin entry points: one clear error line instead of a traceback."""

import functools
import logging
import os
import sys
from typing import Callable

from absl import logging as absl_logging

from cgan_jax.errors import UserError

# Library INFO chatter that buries the progress line (orbax narrates every save; clu's
# LoggingWriter repeats the scalars we already log). Their warnings still show.
_QUIET_INFO_FROM = ('/orbax/', '/clu/metric_writers/logging_writer.py', '/jax/_src/xla_bridge.py')


def _not_library_info(record: logging.LogRecord) -> bool:
  return record.levelno > logging.INFO or not any(p in record.pathname for p in _QUIET_INFO_FROM)


def quiet_tensorflow() -> None:
  """Keeps TF's C++ logging out of the user's terminal."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def user_errors_exit(main: Callable) -> Callable:
  """Wraps an absl main so that a UserError prints `error: ...` and exits with status 2."""

  @functools.wraps(main)
  def wrapped(argv):
    absl_logging.get_absl_handler().addFilter(_not_library_info)
    try:
      return main(argv)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)

  return wrapped
