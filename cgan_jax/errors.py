"""Errors that reach the user as one clear line (no traceback)."""


class UserError(Exception):
  """Bad input from the user: unknown name, missing/corrupt file, bad flag value."""
