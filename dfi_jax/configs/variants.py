"""A config file's variants (`--config=FILE:variant`) as data: a table of each variant's fields.

  VARIANTS = {"default": {}, "tiny": dict(image_size=32, steps=3)}   # the first is the default

  def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.image_size = 64
    c.steps = 3000
    return variants.apply(c, arg, "x.py", VARIANTS)

An override may only change a field the file's base config already has, so a misspelt field in
a variant is an error instead of a new field that nothing reads.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections


def resolve(arg: str, name: str, variants: Iterable[str]) -> str:
  """The variant that `arg` selects (`''` = the first of `variants`), checked to be one of them.

  `name`: the config file's name, for the error (`"judge.py"`)."""
  names = tuple(variants)
  variant = arg or names[0]
  if variant not in names:
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise ValueError(f"unknown variant {arg!r} of {name}; expected {listed}")
  return variant


def apply(c: ml_collections.ConfigDict, arg: str, name: str,
          table: Mapping[str, Mapping[str, Any]]) -> ml_collections.ConfigDict:
  """`c` (the base config, changed in place) with `c.variant` set to the variant `arg` selects
  from `table` (variant -> {field: value}; `''` = its first) and that variant's fields set.

  Raises ValueError naming `name` for an unknown variant, or for an override of a field that
  `c` does not have."""
  variant = resolve(arg, name, table)
  overrides = table[variant]
  unknown = [field for field in overrides if field not in c]
  if unknown:
    raise ValueError(f"variant {variant!r} of {name} sets {', '.join(unknown)}, not a field of "
                     "its base config")
  c.variant = variant
  for field, value in overrides.items():
    c[field] = value
  return c
