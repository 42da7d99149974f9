"""The versions of the packages a result was made with, for its record."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Sequence

RUN_PACKAGES = ("jax", "jaxlib", "flax", "optax", "jaxopt", "numpy", "pillow", "ml_collections")


def package_versions(names: Sequence[str] = RUN_PACKAGES, missing: str | None = None,
                     python: bool = True) -> dict:
  """`{package: version}` for `names` (`missing` for one not installed), after Python's own
  version as `python` unless `python` is False."""
  out = {"python": platform.python_version()} if python else {}
  for name in names:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = missing
  return out
