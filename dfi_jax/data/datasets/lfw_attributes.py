"""Kumar et al.'s LFW attributes: parsing `lfw_attributes.txt`, the official binarisation, the
join with the images, and the paper's demo1 edits.

The file: a comment line, then a header `#<TAB>person<TAB>imagenum<TAB>Male<TAB>…` naming 73
attributes, then one tab-separated row per image: the person's name with spaces ("Aaron
Eckhart"), the image number (1), and 73 real-valued classifier scores. The image is
`lfw/Aaron_Eckhart/Aaron_Eckhart_0001.jpg`.

The official binarisation (`datasets/lfw/lfw_binarize_attributes.py` of the release): for each
attribute, the images with score > 0 ranked by score, highest first (ties in file order), and
the first ⌊2n/3⌋ of those n are positive. "Female" is added from the *negative* Male scores the
same way (most negative first, the first two thirds), so an image is in at most one of Male and
Female, and some (weak scores) in neither. Each attribute gets the gender whose members express
it more (+1 per Male member, −1 per Female member, Male on a tie). The 74 attributes are sorted
by name, which is the order of the Hamming distance's bits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from dfi_jax.data.datasets.common import DatasetError
from dfi_jax.data.sources import Edit

NUM_SCORES = 73
ATTRIBUTES_URL = "https://www.cs.columbia.edu/CAVE/databases/pubfig/download/lfw_attributes.txt"
ATTRIBUTES_FILE = "lfw_attributes.txt"

# The paper's demo1: (source, target) pairs, in Kumar's names, and their edit names.
DEMO1_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("senior", "Youth", "Senior"),
    ("mouth_slightly_open", "Mouth Closed", "Mouth Slightly Open"),
    ("eyes_open", "Narrow Eyes", "Eyes Open"),
    ("smiling", "Frowning", "Smiling"),
    ("mustache", "No Beard", "Mustache"),
    ("eyeglasses", "No Eyewear", "Eyeglasses"),
)
DEMO1_EDITS: tuple[str, ...] = tuple(name for name, _, _ in DEMO1_PAIRS)


class KumarTable(NamedTuple):
  """`names`: `[N]` image stems ("Aaron_Eckhart_0001") in file order; `score_names`: the 73
  attribute names; `scores`: `[N, 73]` float32."""
  names: list[str]
  score_names: tuple[str, ...]
  scores: np.ndarray


class Binary(NamedTuple):
  """`attributes`: `[N, 74]` bool over `attribute_names` (sorted, "Female" included);
  `gender`: attribute name -> "Male" or "Female"; `group`: `[N]` int8, 0 = in the Male set,
  1 = in the Female set, 2 = in neither."""
  attributes: np.ndarray
  attribute_names: tuple[str, ...]
  gender: dict[str, str]
  group: np.ndarray


def image_stem(person: str, number: int) -> str:
  return f"{person.strip().replace(' ', '_')}_{number:04d}"


def parse(path: str | os.PathLike) -> KumarTable:
  """Reads `lfw_attributes.txt`; one-line DatasetError for anything malformed."""
  path = Path(path)
  try:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
  except FileNotFoundError:
    raise DatasetError(f"missing {path}: Kumar et al.'s {ATTRIBUTES_FILE} (13,143 rows), from "
                       f"{ATTRIBUTES_URL}") from None
  except OSError as e:
    raise DatasetError(f"cannot read {path} ({e.strerror})") from None
  header_at = next((i for i, l in enumerate(lines[:5])
                    if l.startswith("#") and "person" in l.split("\t")), None)
  if header_at is None:
    raise DatasetError(f"{path}: no header line '#<TAB>person<TAB>imagenum<TAB>Male…' in its "
                       f"first lines; expected Kumar et al.'s {ATTRIBUTES_FILE}")
  header = lines[header_at].rstrip("\n").split("\t")[1:]
  if header[:2] != ["person", "imagenum"] or len(header) != NUM_SCORES + 2:
    raise DatasetError(f"{path}: header has {len(header)} fields starting {header[:3]}; expected "
                       f"person, imagenum and {NUM_SCORES} attributes")
  score_names = tuple(h.strip() for h in header[2:])
  names, rows, seen = [], [], {}
  for n, line in enumerate(lines[header_at + 1:], header_at + 2):
    if not line.strip() or line.startswith("#"):
      continue
    fields = line.split("\t")
    if len(fields) != NUM_SCORES + 2:
      raise DatasetError(f"{path} line {n}: {len(fields)} tab-separated fields, expected "
                         f"{NUM_SCORES + 2} (person, imagenum, {NUM_SCORES} scores)")
    try:
      number = int(fields[1])
      values = [float(v) for v in fields[2:]]
    except ValueError:
      raise DatasetError(f"{path} line {n}: non-numeric image number or score in "
                         f"{line[:80]!r}") from None
    if not np.all(np.isfinite(values)):
      raise DatasetError(f"{path} line {n}: non-finite score")
    stem = image_stem(fields[0], number)
    if stem in seen:
      raise DatasetError(f"{path} line {n}: {stem} already given on line {seen[stem]}")
    seen[stem] = n
    names.append(stem)
    rows.append(values)
  if not rows:
    raise DatasetError(f"{path}: no attribute rows after the header")
  return KumarTable(names, score_names, np.asarray(rows, np.float32))


def top_two_thirds(values: np.ndarray) -> np.ndarray:
  """Indices of the first ⌊2n/3⌋ of `values` ranked highest first, ties in index order."""
  order = np.argsort(-values, kind="stable")
  return order[:len(order) * 2 // 3]


def binarise(table: KumarTable) -> Binary:
  """The official binarisation of `table.scores` (see the module docstring)."""
  scores = np.asarray(table.scores, np.float64)
  n = len(scores)
  members: dict[str, np.ndarray] = {}
  for j, name in enumerate(table.score_names):
    positive = np.flatnonzero(scores[:, j] > 0)
    members[name] = positive[top_two_thirds(scores[positive, j])]
  if "Male" not in table.score_names:
    raise DatasetError("lfw_attributes.txt has no 'Male' column; cannot derive Female")
  male = scores[:, table.score_names.index("Male")]
  negative = np.flatnonzero(male < 0)
  members["Female"] = negative[top_two_thirds(-male[negative])]
  names = tuple(sorted(members))
  attributes = np.zeros((n, len(names)), bool)
  for j, name in enumerate(names):
    attributes[members[name], j] = True
  is_male = attributes[:, names.index("Male")]
  is_female = attributes[:, names.index("Female")]
  vote = is_male.astype(np.int64) - is_female.astype(np.int64)
  gender = {a: "Male" if int(vote[attributes[:, j]].sum()) >= 0 else "Female"
            for j, a in enumerate(names)}
  group = np.where(is_male, 0, np.where(is_female, 1, 2)).astype(np.int8)
  return Binary(attributes, names, gender, group)


def snake(name: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def edits(attribute_names: Sequence[str]) -> tuple[Edit, ...]:
  """demo1's six edits (official source/target pairs), then "add attribute a" for every other
  attribute, named in snake case ("wearing_hat")."""
  out = [Edit(name, target, source) for name, source, target in DEMO1_PAIRS]
  taken = {e.name for e in out}
  for a in attribute_names:
    if snake(a) not in taken:
      out.append(Edit(snake(a), a))
      taken.add(snake(a))
  return tuple(out)


class Join(NamedTuple):
  """Rows of the attribute table that have an image (`table_rows`, in file order) and the
  matching image index (`image_rows`); what is missing on either side, by name."""
  table_rows: np.ndarray
  image_rows: np.ndarray
  images_without_attributes: list[str]
  attributes_without_images: list[str]

  def summary(self) -> str:
    def some(names):
      return (": " + ", ".join(names[:5]) + (" …" if len(names) > 5 else "")) if names else ""
    return (f"{len(self.table_rows)} images with attributes; "
            f"{len(self.images_without_attributes)} images without a row in "
            f"{ATTRIBUTES_FILE}{some(self.images_without_attributes)}; "
            f"{len(self.attributes_without_images)} attribute rows without an image"
            f"{some(self.attributes_without_images)}")


def join(table_names: Sequence[str], image_names: Sequence[str]) -> Join:
  """Matches attribute rows to images by stem; nothing is dropped silently."""
  where = {n: i for i, n in enumerate(image_names)}
  rows = [(t, where[n]) for t, n in enumerate(table_names) if n in where]
  in_table = set(table_names)
  return Join(np.asarray([t for t, _ in rows], np.int64),
              np.asarray([i for _, i in rows], np.int64),
              sorted(n for n in image_names if n not in in_table),
              [n for n in table_names if n not in where])
