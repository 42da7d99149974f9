"""What every experiments/ entry point shares: one clear line on stderr and exit 1 for bad input."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

from absl import app
from absl import flags
from absl import logging

# Errors a user can cause: RunError, WeightsError and ImageError are ValueErrors; OSError covers
# unreadable files and a full disk; AttributeError is ml_collections' unknown config field.
USER_ERRORS = (ValueError, OSError, KeyError, TypeError, AttributeError)


def fail(message: str) -> NoReturn:
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
  sys.exit(1)


def parse_flags(argv):
  """absl's parser, with bad flags and config overrides reported on one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    if any(l.startswith("Traceback") for l in lines):  # a config file raised: keep its message
      lines = [lines[0].split("Traceback")[0].rstrip(" :"), lines[-1]]
    fail(": ".join(lines) if len(lines) > 1 else str(e))
  except USER_ERRORS as e:  # e.g. --config.nosuchfield=1
    fail(f"bad flag or config override: {type(e).__name__}: {e}; see the config file's fields")


def run_main(main: Callable) -> None:
  """`app.run(main)`, turning user errors into one stderr line and a non-zero exit."""
  def wrapped(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # JAX's INFO lines (e.g. "no TPU") are noise here
    try:
      return main(argv)
    except USER_ERRORS as e:
      fail(f"{type(e).__name__}: {e}")
  app.run(wrapped, flags_parser=parse_flags)


def check_new_output(out, overwrite: bool, flag: str = "out") -> None:
  """Refuses to replace an existing output file unless `--overwrite` was given."""
  if out.exists() and not overwrite:
    raise ValueError(f"--{flag}={out} exists; pass --overwrite to replace it")
