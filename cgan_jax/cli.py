"""Shared plumbing for the thin entry points: one clear error line instead of a traceback.

Exit statuses (README "Faults and preemption"): 0 done; 2 one `error:` line (bad input, a
workdir in use, no checkpoint that restores, a failed save); 128 + signal (143 SIGTERM,
130 SIGINT) stopped by a signal after saving a checkpoint; 1 a bug (its traceback).
"""

import functools
import importlib.util
import logging
import os
import re
import sys
import time
from typing import Callable

from absl import logging as absl_logging

from cgan_jax.errors import Preempted, UserError

# Library INFO chatter that buries the progress line (orbax narrates every save; clu's
# LoggingWriter repeats the scalars we already log; clu's local work unit echoes the progress
# note). Their warnings still show; all of it goes to the workdir's train.log.
_QUIET_INFO_FROM = ('/orbax/', '/clu/metric_writers/logging_writer.py', '/clu/platform/',
                    '/jax/_src/xla_bridge.py')
# Warnings that are no news: generate.py and eval.py open checkpoints read-only on purpose.
_NO_NEWS = ('Given directory is read only',)


def verbose() -> bool:
  """True when the user asked for library logs too (absl's --verbosity=1 or -v 1)."""
  return absl_logging.get_verbosity() >= 1


def _not_library_info(record: logging.LogRecord) -> bool:
  if any(record.getMessage().startswith(m) for m in _NO_NEWS):
    return False
  return record.levelno > logging.INFO or not any(p in record.pathname for p in _QUIET_INFO_FROM)


def _no_orbax_traceback(record: logging.LogRecord) -> bool:
  """Orbax logs a failed save with its traceback before re-raising it; the error line we
  print says what failed, so its record keeps the message but loses the traceback."""
  if '/orbax/' in record.pathname and record.exc_info:
    record.exc_info, record.exc_text = None, None
  return True


class _Brief(logging.Formatter):
  """'13:01:53 step 2/4 ...' for the terminal; warnings say so ('13:01:53 warning: ...')."""

  def format(self, record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.levelno >= logging.WARNING:
      text = f'{record.levelname.lower()}: {text}'
    if record.exc_info:
      text += '\n' + self.formatException(record.exc_info)
    return f'{time.strftime("%H:%M:%S", time.localtime(record.created))} {text}'


def quiet_tensorflow() -> None:
  """Keeps TF's C++ notices out of the terminal; call before TensorFlow is imported.

  TF_CPP_MIN_LOG_LEVEL does not stop TF 2.21's oneDNN notice, which absl's C++ logging
  prints (twice) before it is initialised; TF_ENABLE_ONEDNN_OPTS=0 does. TF only feeds data
  here (tf.data, TensorBoard summaries), where oneDNN's fused kernels play no part. Either
  variable set by the user wins.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')


# XLA's CPU compiler hands dots and convolutions to YNNPACK with this flag (experimental in
# jaxlib 0.10): InceptionV3's features run about 2x faster on a 2-core AMD EPYC (160 -> 77
# ms/image, features within 7e-7 relative of the default path; docs/inception_fid.md); the
# train steps do not change speed. XLA aborts on a flag it does not know, so it is only
# added for the jaxlib minor versions it was tested with.
CPU_DOT_FUSION_FLAG = '--xla_cpu_experimental_ynn_fusion_type=dot'
CPU_DOT_FUSION_JAXLIB = ('0.10.',)


def fast_cpu_features() -> bool:
  """Adds CPU_DOT_FUSION_FLAG to XLA_FLAGS for the evaluation entry points (eval.py,
  results.py): call before JAX's first computation. Not when XLA_FLAGS already names a YNN
  fusion type (the user's choice wins), `CGAN_JAX_CPU_DOT_FUSION=0`, or another jaxlib; True
  when added. Only XLA's CPU compiler reads the flag: on a GPU it changes nothing."""
  current = os.environ.get('XLA_FLAGS', '')
  if os.environ.get('CGAN_JAX_CPU_DOT_FUSION', '1') == '0' or 'ynn_fusion_type' in current:
    return False
  import jaxlib
  if not jaxlib.__version__.startswith(CPU_DOT_FUSION_JAXLIB):
    return False
  os.environ['XLA_FLAGS'] = f'{current} {CPU_DOT_FUSION_FLAG}'.strip()
  return True


def quiet_logs() -> None:
  """The terminal shows the project's own lines, every warning and every error, in a short
  format; library INFO chatter does not. --verbosity=1 shows everything in absl's format."""
  if verbose():
    return
  quiet_tensorflow()
  handler = absl_logging.get_absl_handler()
  handler.addFilter(_not_library_info)
  handler.addFilter(_no_orbax_traceback)
  handler.python_handler.setFormatter(_Brief())


def log_to_file(path: str) -> None:
  """Every log record of this process (libraries included, absl's format) appended to `path`."""
  handler = logging.FileHandler(path)
  handler.setFormatter(absl_logging.PythonFormatter())
  logging.getLogger().addHandler(handler)


def user_errors_exit(main: Callable) -> Callable:
  """Wraps an absl main so that a UserError prints `error: ...` and exits with status 2, and
  a stop on a signal prints its line and exits with 128 + the signal (main's return value,
  so that absl's app.run exits with it outside any other wrapper)."""

  @functools.wraps(main)
  def wrapped(argv):
    quiet_logs()  # flags are parsed: --verbosity is known; nothing has imported TF yet
    try:
      return main(argv)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    except Preempted as e:
      print(str(e), file=sys.stderr)
      return e.exit_code

  return wrapped


def check_config_file(spec: str) -> None:
  """--config=PATH[:ARG] loaded as config_flags will load it, so that a missing file, a
  syntax error, a missing or raising get_config is one UserError naming the file."""
  path, _, arg = spec.partition(':')
  where = f'--config={spec}'
  if not os.path.isfile(path):
    raise UserError(f'{where}: no such file {os.path.abspath(path)}')
  try:
    with open(path, encoding='utf-8') as f:
      compile(f.read(), path, 'exec')
  except SyntaxError as e:
    raise UserError(f'{where}: syntax error in {path}, line {e.lineno}: {e.msg}') from e
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f'{where}: cannot read {path}: {e}') from e
  loader = importlib.util.spec_from_file_location('_config_file_check', path)
  module = importlib.util.module_from_spec(loader)
  try:
    loader.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - a config file is code: anything can fail
    raise UserError(f'{where}: running {path} raised {type(e).__name__}: {e}') from e
  get_config = getattr(module, 'get_config', None)
  if not callable(get_config):
    raise UserError(f'{where}: {path} defines no get_config()')
  try:
    get_config(arg) if arg else get_config()
  except Exception as e:  # noqa: BLE001
    call = f'get_config({arg!r})' if arg else 'get_config()'
    raise UserError(f'{where}: {call} in {path} raised {type(e).__name__}: {e}') from e


def _config_argument(argv: list[str]) -> str | None:
  """The value of the last --config (absl's: the last one wins)."""
  found = None
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith('--config='):
      found = arg.split('=', 1)[1]
    elif arg == '--config' and i + 1 < len(argv):
      found = argv[i + 1]
  return found


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (as app.run does it), where every way a config can be wrong is one
  `error:` line and exit status 2: a config file that is missing, does not parse, has no
  get_config or whose get_config raises (named); a --config.<field> override that names no
  field of the config, or cannot be read as the field's type."""
  from absl import flags
  try:
    spec = _config_argument(argv)
    if spec is not None:
      check_config_file(spec)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # absl would print 'FATAL Flags parsing error' and exit 1
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    sys.exit(2)
  except (KeyError, AttributeError) as e:
    _no_such_field(e, argv)


def _no_such_field(e: BaseException, argv: list[str]) -> None:
  """An override naming no field of the config: one `error:` line, exit status 2."""
  overrides = [a.split('=', 1)[0] for a in argv[1:] if a.startswith('--config.')]
  text = str(e).replace('\\', '')
  names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)
  field = names[0] if names else text
  maybe = re.search(r'Did you mean "([^"]+)"', text)
  named = [o for o in overrides if field in o.split('=')[0].split('.')[1:]] or overrides
  hint = (" (a model option exists only in its family: README 'Models' lists each "
          "family's options)" if any(o.startswith('--config.model.') for o in named) else '')
  if maybe:
    hint = f' (did you mean {maybe.group(1)!r}?)'
  print(f'error: {", ".join(named)}: the config has no field {field!r}{hint}', file=sys.stderr)
  sys.exit(2)


def define_config_file(name: str, default: str, help_text: str):
  """config_flags.DEFINE_config_file, locked. It loads the default file and applies the
  command line's --config.<field> overrides at once, at import time; an override naming no
  field then is the same one `error:` line as at parse time."""
  from absl import flags
  from ml_collections import config_flags
  try:
    return config_flags.DEFINE_config_file(name, default, help_text, lock_config=True)
  except (KeyError, AttributeError) as e:
    _no_such_field(e, sys.argv)
  except flags.Error as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    sys.exit(2)
