"""Shared plumbing for the thin entry points: one clear error line instead of a traceback."""

import functools
import os
import sys
from typing import Callable

from cgan_jax.errors import UserError


def quiet_tensorflow() -> None:
  """Keeps TF's C++ logging out of the user's terminal."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def user_errors_exit(main: Callable) -> Callable:
  """Wraps an absl main so that a UserError prints `error: ...` and exits with status 2."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)

  return wrapped
