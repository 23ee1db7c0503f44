"""Errors that reach the user as one clear line (no traceback), and the preemption stop."""


class UserError(Exception):
  """Bad input from the user: unknown name, missing/corrupt file, bad flag value."""


class CheckpointWriteError(UserError):
  """A checkpoint could not be written (disk full, permission lost, ...)."""


class CheckpointDamaged(UserError):
  """A checkpoint exists but does not restore (a truncated, missing or corrupt file)."""

  def __init__(self, step: int, file: str, reason: str):
    self.step, self.file, self.reason = step, file, reason
    super().__init__(f'checkpoint step {step} is damaged: {file}: {reason}')


class Preempted(Exception):
  """Training stopped on a signal after saving a checkpoint; exit status 128 + signal."""

  def __init__(self, message: str, exit_code: int):
    super().__init__(message)
    self.exit_code = exit_code
