"""A folder of images with a CSV of attributes (UT-Zappos50K shoes, your own collection).

The CSV has a header; column `config.name_column` (default `name`) holds each image's path
relative to `config.folder` (an extension may be left off if the file is .jpg, .jpeg or .png);
the other columns, or those listed in `config.columns`, are attributes. A column whose values
are all in {0, 1}, {-1, 1}, {true, false} or {yes, no} is binary; any other numeric column is
real-valued and binarised like Kumar's LFW scores (`config.binarise = "official"`: the top two
thirds of the positive values; `"positive"`: every value > 0).

The CSV is read row by row and images only when the run asks for them, so the folder is never
loaded whole. Images listed but absent from the folder are counted and reported, not silently
dropped; so are images in the folder that the CSV does not list.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from dfi_jax.data import fitting
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.data.datasets import common
from dfi_jax.data.datasets import crop as crop_lib
from dfi_jax.data.datasets import lfw_attributes
from dfi_jax.data.datasets.common import DatasetError
from dfi_jax.data.sources import Bank, Edit

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class Table(NamedTuple):
  """`names`: `[N]` paths relative to the folder; `values`: `[N, C]` float64 (binary columns
  hold 0/1); `columns`: the C attribute names; `binary`: `[C]` bool."""
  names: list[str]
  columns: tuple[str, ...]
  values: np.ndarray
  binary: np.ndarray


def _cell(text: str, path, line: int, column: str) -> tuple[float, bool | None]:
  """(value, True/False if it is a boolean word or None)."""
  t = text.strip().lower()
  if t in ("true", "yes", "t", "y"):
    return 1.0, True
  if t in ("false", "no", "f", "n"):
    return 0.0, False
  try:
    v = float(t)
  except ValueError:
    raise DatasetError(f"{path} line {line}, column {column!r}: {text!r} is not a number or "
                       "true/false") from None
  if not np.isfinite(v):
    raise DatasetError(f"{path} line {line}, column {column!r}: {text!r} is not finite")
  return v, None


def _rows(reader, path: Path):
  """`reader`'s rows; a malformed CSV (e.g. a field over csv.field_size_limit()) is one line."""
  try:
    yield from reader
  except csv.Error as e:
    raise DatasetError(f"{path} line {reader.line_num}: not a CSV row ({e})") from None


def read_table(path: str | os.PathLike, name_column: str = "name",
               columns: Sequence[str] = ()) -> Table:
  """Streams the CSV; one-line DatasetError for unknown columns, non-numeric values,
  duplicate or empty names."""
  path = Path(path).expanduser()
  if path.exists():  # a named pipe would block the read forever
    files_lib.check_input_file(path, f"--config.csv={path}")
  try:
    f = open(path, newline="", encoding="utf-8-sig")
  except FileNotFoundError:
    raise DatasetError(f"--config.csv={path}: no such file") from None
  except OSError as e:
    raise DatasetError(f"--config.csv={path}: cannot read it ({e.strerror})") from None
  with f:
    reader = _rows(csv.reader(f), path)
    header = _header(next(reader, None), path, name_column)
    wanted = _wanted_columns(header, path, name_column, columns)
    names, rows, words = _read_rows(reader, path, header, name_column, wanted)
  if not rows:
    raise DatasetError(f"{path}: no rows after the header")
  values = np.asarray(rows, np.float64)
  binary = np.all((values == 0) | (values == 1) | (values == -1), axis=0) | words
  return Table(names, tuple(wanted), values, binary)


def _header(header: list[str] | None, path: Path, name_column: str) -> list[str]:
  """The header row, stripped; it must hold `name_column` and no column twice."""
  if not header:
    raise DatasetError(f"{path}: empty; expected a header row with {name_column!r} and "
                       "attribute columns")
  header = [h.strip() for h in header]
  dupes = sorted({h for h in header if header.count(h) > 1})
  if dupes:
    raise DatasetError(f"{path}: duplicate column(s) {dupes} in the header")
  if name_column not in header:
    raise DatasetError(f"{path}: no column {name_column!r} (--config.name_column); the "
                       f"columns are {header}")
  return header


def _wanted_columns(header: list[str], path: Path, name_column: str,
                    columns: Sequence[str]) -> list[str]:
  """`columns` (default: every column but the names), each checked against the header."""
  wanted = list(columns) or [h for h in header if h != name_column]
  unknown = [c for c in wanted if c not in header or c == name_column]
  if unknown:
    raise DatasetError(f"{path}: unknown column(s) {unknown} in --config.columns; the "
                       f"attribute columns are {[h for h in header if h != name_column]}")
  if not wanted:
    raise DatasetError(f"{path}: no attribute columns besides {name_column!r}")
  return wanted


def _read_rows(reader, path: Path, header: list[str], name_column: str,
               wanted: list[str]) -> tuple[list[str], list[list[float]], np.ndarray]:
  """(names, each row's `wanted` values, `[len(wanted)]` bool: the column had a true/false
  word); blank rows skipped, a short row or an empty or repeated name raises."""
  name_at = header.index(name_column)
  at = [header.index(c) for c in wanted]
  names, rows, seen = [], [], {}
  words = np.zeros(len(wanted), bool)
  for line, row in enumerate(reader, 2):
    if not any(cell.strip() for cell in row):
      continue
    if len(row) != len(header):
      raise DatasetError(f"{path} line {line}: {len(row)} fields, the header has "
                         f"{len(header)}")
    name = row[name_at].strip()
    if not name:
      raise DatasetError(f"{path} line {line}: empty {name_column!r}")
    if name in seen:
      raise DatasetError(f"{path} line {line}: duplicate name {name!r} (first on line "
                         f"{seen[name]})")
    seen[name] = line
    values = []
    for j, (c, k) in enumerate(zip(wanted, at)):
      v, word = _cell(row[k], path, line, c)
      words[j] |= word is not None
      values.append(v)
    names.append(name)
    rows.append(values)
  return names, rows, words


def binarise(table: Table, rule: str = "official") -> np.ndarray:
  """`[N, C]` bool: binary columns as given (1 is positive, 0 and −1 negative); real-valued
  columns by `rule` ("official": top two thirds of the positive values; "positive": > 0)."""
  if rule not in ("official", "positive"):
    raise DatasetError(f"--config.binarise={rule!r}: expected 'official' or 'positive'")
  out = np.zeros(table.values.shape, bool)
  for j in range(len(table.columns)):
    v = table.values[:, j]
    if table.binary[j] or rule == "positive":
      out[:, j] = v > 0
    else:
      positive = np.flatnonzero(v > 0)
      out[positive[lfw_attributes.top_two_thirds(v[positive])], j] = True
  return out


def parse_edits(specs: Sequence[str], columns: Sequence[str]) -> tuple[Edit, ...]:
  """`"target"` adds a column; `"source->target"` is the official pair rule. Default: every
  column as an "add" edit named after it."""
  if not specs:
    return tuple(Edit(c, c) for c in columns)
  out = []
  for spec in specs:
    source, _, target = spec.rpartition("->")
    source, target = source.strip() or None, target.strip()
    unknown = [c for c in (source, target) if c is not None and c not in columns]
    if unknown:
      raise DatasetError(f"--config.edits: {spec!r} names unknown column(s) {unknown}; the "
                         f"attribute columns are {list(columns)}")
    out.append(Edit(target if source is None else f"{source}->{target}", target, source))
  return tuple(out)


def resolve(folder: Path, name: str) -> Path | None:
  path = folder / name
  if path.is_file():
    return path
  if not path.suffix:
    for ext in (".jpg", ".jpeg", ".png"):
      if path.with_suffix(ext).is_file():
        return path.with_suffix(ext)
  return None


def count_unlisted(folder: Path, listed: set[str], limit: int = 5) -> tuple[int, list[str]]:
  """Images under `folder` that the CSV does not list (streamed directory walk)."""
  count, examples = 0, []
  for root, _, files in os.walk(folder):
    for f in files:
      if f.lower().endswith(IMAGE_EXTENSIONS):
        rel = os.path.relpath(os.path.join(root, f), folder)
        if rel not in listed and os.path.splitext(rel)[0] not in listed:
          count += 1
          if len(examples) < limit:
            examples.append(rel)
  return count, examples


def folder_bank(config):
  """The bank for `config.data = "folder"` (see the module docstring)."""
  folder = Path(config.folder).expanduser()
  if not folder.is_dir():
    raise DatasetError(f"--config.folder={folder}: not a directory")
  table = read_table(config.csv, config.get("name_column", "name") or "name",
                     tuple(config.get("columns", ()) or ()))
  attributes = binarise(table, config.get("binarise", "official") or "official")
  paths = [resolve(folder, n) for n in table.names]
  missing = [n for n, p in zip(table.names, paths) if p is None]
  unlisted, examples = count_unlisted(folder, set(table.names))
  keep = [i for i, p in enumerate(paths) if p is not None]
  print(f"folder: {len(keep)} images with attributes; {len(missing)} listed in {config.csv} but "
        f"not in {folder}{(': ' + ', '.join(missing[:5])) if missing else ''}; {unlisted} "
        f"images in the folder not in the CSV{(': ' + ', '.join(examples)) if examples else ''}",
        flush=True)
  if not keep:
    raise DatasetError(f"none of the {len(table.names)} images of {config.csv} is in {folder}")
  group = None
  group_column = config.get("group_column", "") or ""
  if group_column:
    if group_column not in table.columns:
      raise DatasetError(f"--config.group_column={group_column!r}: not an attribute column; "
                         f"they are {list(table.columns)}")
    group = attributes[keep, table.columns.index(group_column)].astype(np.int32)
  box = crop_lib.parse_crop(config.get("crop"), crop_lib.NO_CROP)
  fit = config.get("fit", "pad") or "pad"
  if fit not in ("pad", "stretch"):
    raise DatasetError(f"--config.fit={fit!r}: expected 'pad' or 'stretch'")
  size = config.image_size
  names = [table.names[i] for i in keep]
  files = [paths[i] for i in keep]

  def read(i: int) -> np.ndarray:
    image = image_io.load_image(files[i])
    if box.height and box.width:
      h, w = image.shape[:2]
      if box.top + box.height > h or box.left + box.width > w:
        raise DatasetError(f"{files[i]}: crop {tuple(box)} does not fit in the {h}×{w} image")
      image = image[box.top:box.top + box.height, box.left:box.left + box.width]
    # pad: the own-photo fitting; stretch: the official 8-bit resampling, as LFW and CelebA.
    return fitting.fit_square(image, size, fit,
                               resample="lanczos" if fit == "pad" else "official")[0]

  return Bank(images=common.LazyImages(len(names), size, read), attributes=attributes[keep],
              attribute_names=table.columns, names=names,
              edits=parse_edits(tuple(config.get("edits", ()) or ()), table.columns),
              group=group)
