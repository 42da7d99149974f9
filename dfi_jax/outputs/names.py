"""The names of a run's output files, made and parsed in one place.

An edit is `edits/<image>__<attribute>__d<δ>.png`; the other per-edit files use the same
`<image>__<attribute>__<what>` stem (`baselines/<image>__<attribute>__pixel.png`,
`photos/<photo>__<attribute>__closeup.png`). Image and attribute names hold no `__`
(the attribute may: a combined edit `a+b` does not).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

SEPARATOR = "__"
EDIT_PATTERN = "<image>__<attribute>__d<delta>.png"


def delta_tag(delta: float) -> str:
  """How output names spell an edit strength δ: `d1`, `d2.5`, `d-1`."""
  return f"d{delta:g}"


def output_name(image: str, attribute: str, what: str, folder: str = "edits",
                suffix: str = ".png") -> str:
  """`<folder>/<image>__<attribute>__<what><suffix>` (`what` '' drops its part), relative to
  the workdir."""
  stem = SEPARATOR.join([image, attribute] + ([what] if what else []))
  return f"{folder}/{stem}{suffix}" if folder else f"{stem}{suffix}"


def edit_stem(image: str, attribute: str, delta: float) -> str:
  """`<image>__<attribute>__d<δ>`: an edit's name without folder and suffix (a run's state)."""
  return SEPARATOR.join([image, attribute, delta_tag(delta)])


def edit_name(image: str, attribute: str, delta: float, folder: str = "edits") -> str:
  """`image` with `attribute` added at strength δ: `edits/<image>__<attribute>__d<δ>.png`."""
  return output_name(image, attribute, delta_tag(delta), folder)


def split_name(path: str | os.PathLike, parts: int = 3) -> list[str]:
  """The `parts` non-empty `__`-separated fields of a file name's stem (the first field may
  itself hold `__`); raises ValueError otherwise."""
  fields = Path(path).stem.rsplit(SEPARATOR, parts - 1)
  if len(fields) != parts or not all(fields):
    raise ValueError(f"expected {parts} non-empty fields joined by {SEPARATOR!r}")
  return fields


class EditName(NamedTuple):
  image: str
  attribute: str
  delta: float


def parse_edit_name(path: str | os.PathLike) -> EditName:
  """`edit_name`'s inverse; raises ValueError naming `EDIT_PATTERN` for any other name."""
  try:
    image, attribute, tag = split_name(path, 3)
    if not tag.startswith("d"):
      raise ValueError(tag)
    return EditName(image, attribute, float(tag[1:]))
  except ValueError:
    raise ValueError(f"expected a name of the form {EDIT_PATTERN}") from None
