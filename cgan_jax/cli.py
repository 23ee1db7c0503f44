"""Shared plumbing for the thin entry points: one clear error line instead of a traceback.

Exit statuses (README "Faults and preemption"): 0 done; 2 one `error:` line (bad input, a
workdir in use, no checkpoint that restores, a failed save); 128 + signal (143 SIGTERM,
130 SIGINT) stopped by a signal after saving a checkpoint; 1 a bug (its traceback).
"""

import functools
import logging
import os
import sys
from typing import Callable

from absl import logging as absl_logging

from cgan_jax.errors import Preempted, UserError

# Library INFO chatter that buries the progress line (orbax narrates every save; clu's
# LoggingWriter repeats the scalars we already log). Their warnings still show.
_QUIET_INFO_FROM = ('/orbax/', '/clu/metric_writers/logging_writer.py', '/jax/_src/xla_bridge.py')


def _not_library_info(record: logging.LogRecord) -> bool:
  return record.levelno > logging.INFO or not any(p in record.pathname for p in _QUIET_INFO_FROM)


def _no_orbax_traceback(record: logging.LogRecord) -> bool:
  """Orbax logs a failed save with its traceback before re-raising it; the error line we
  print says what failed, so its record keeps the message but loses the traceback."""
  if '/orbax/' in record.pathname and record.exc_info:
    record.exc_info, record.exc_text = None, None
  return True


def quiet_tensorflow() -> None:
  """Keeps TF's C++ logging out of the user's terminal."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def user_errors_exit(main: Callable) -> Callable:
  """Wraps an absl main so that a UserError prints `error: ...` and exits with status 2, and
  a stop on a signal prints its line and exits with 128 + the signal (main's return value,
  so that absl's app.run exits with it outside any other wrapper)."""

  @functools.wraps(main)
  def wrapped(argv):
    absl_logging.get_absl_handler().addFilter(_not_library_info)
    absl_logging.get_absl_handler().addFilter(_no_orbax_traceback)
    try:
      return main(argv)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    except Preempted as e:
      print(str(e), file=sys.stderr)
      return e.exit_code

  return wrapped
