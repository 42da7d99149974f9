"""What every experiments/ entry point shares: one clear line on stderr and exit 1 for bad input."""

from __future__ import annotations

import sys
from typing import Callable

from absl import app
from absl import flags
from absl import logging


def run_main(main: Callable) -> None:
  """`app.run(main)`, turning user errors into one stderr line and a non-zero exit."""
  def wrapped(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # JAX's INFO lines (e.g. "no TPU") are noise here
    try:
      return main(argv)
    except (ValueError, OSError, KeyError, TypeError) as e:
      # ValueError covers RunError, WeightsError, ImageError; OSError covers a full disk.
      print(f"error: {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
      sys.exit(1)
  app.run(wrapped)
