"""Reading a bank: the manifest, shards mapped from disk, rows by index, the attribute vector."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import ml_dtypes
import numpy as np

from dfi_jax.data.sources import Edit
from dfi_jax.dfi import attribute_vector as vector_lib
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi.bank.layout import BankError, FORMAT, MANIFEST, shard_paths
from dfi_jax.dfi.bank.search import SearchReduction
from dfi_jax.dfi.neighbours import Neighbours


# ---------------------------------------------------------------------------------------
# Reading.


class DiskBank(NamedTuple):
  """An opened, complete bank. φ stays on disk; `attributes` and `names` are small."""
  path: Path
  manifest: dict
  attributes: np.ndarray  # [N, A] bool
  names: list[str]  # [N]
  group: np.ndarray | None  # [N] int32 neighbour group, when the data has one

  @property
  def num_images(self) -> int:
    return self.manifest["num_images"]

  @property
  def spec(self) -> features_lib.FeatureSpec:
    m = self.manifest
    return features_lib.FeatureSpec(tuple(m["taps"]), tuple(tuple(s) for s in m["tap_shapes"]))

  @property
  def search(self) -> SearchReduction:
    s = self.manifest["search"]
    return SearchReduction(s["kind"], s["size"], s["seed"])

  @property
  def edits(self) -> tuple[Edit, ...]:
    return tuple(Edit(*e) for e in self.manifest["edits"])

  @property
  def attribute_names(self) -> tuple[str, ...]:
    return tuple(self.manifest["attribute_names"])

  def shard_range(self, i: int) -> tuple[int, int]:
    s = self.manifest["shard_size"]
    return i * s, min((i + 1) * s, self.num_images)


def read_manifest(path: str | os.PathLike) -> dict:
  """A bank directory's manifest as written (finished or not); BankError if there is none."""
  path = Path(path)
  try:
    manifest = json.loads((path / MANIFEST).read_text())
  except FileNotFoundError:
    raise BankError(f"{path} is not a bank (no {MANIFEST}); build one with "
                    "`python -m experiments.build_bank`") from None
  except (OSError, ValueError) as e:
    raise BankError(f"{path / MANIFEST} is unreadable ({e})") from None
  if not isinstance(manifest, dict):
    raise BankError(f"{path / MANIFEST} is unreadable (not a JSON object)")
  return manifest


def open_bank(path: str | os.PathLike) -> DiskBank:
  """Opens a complete bank (manifest, attributes and names only; φ stays on disk)."""
  path = Path(path)
  manifest = read_manifest(path)
  if manifest.get("format") != FORMAT:
    raise BankError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
  if not manifest.get("complete"):
    raise BankError(f"{path}: the build is unfinished; rerun the same build_bank command to "
                    "resume it")
  attributes, names, group = [], [], []
  try:
    num_shards, size, total = (int(manifest[k]) for k in ("num_shards", "shard_size",
                                                          "num_images"))
    if num_shards != -(-total // size):
      raise ValueError(f"{num_shards} shards of {size} cannot hold {total} images")
    width = len(manifest["attribute_names"])
  except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
    raise BankError(f"{path / MANIFEST} disagrees with itself ({type(e).__name__}: {e}); "
                    f"{_REBUILD}") from None
  for i in range(num_shards):
    rows = min((i + 1) * size, total) - i * size
    marker = _marker(path, i, manifest, rows)
    found = _load(path, i, "attributes", (rows, width))
    attributes.append(found)
    names += marker["names"]
    if manifest.get("has_group"):
      group.append(_load(path, i, "group", (rows,)))
  return DiskBank(path, manifest, np.concatenate(attributes), names,
                  np.concatenate(group) if group else None)


_REBUILD = ("rerun the build_bank command that made it (it rebuilds damaged shards), or "
            "rebuild it with build_bank --overwrite")


def _marker(path: Path, i: int, manifest: dict, rows: int | None = None) -> dict:
  """Shard `i`'s done marker, checked against the manifest (rows, generation)."""
  file = shard_paths(path, i)["marker"]
  try:
    marker = json.loads(file.read_text())
    if not isinstance(marker, dict) or not isinstance(marker.get("names"), list):
      raise ValueError("not a shard marker")
  except (OSError, ValueError) as e:
    raise BankError(f"{file}: missing or damaged ({e}); {_REBUILD}") from None
  if marker.get("generation") != manifest.get("generation"):
    raise BankError(f"{path}: shard {file.name} belongs to another build of the bank than "
                    f"{MANIFEST} (it was rebuilt while this run read it?); rerun once "
                    "build_bank has finished")
  if rows is not None and (marker.get("rows") != rows or len(marker["names"]) != rows):
    raise BankError(f"{file}: {marker.get('rows')!r} rows, but {MANIFEST} gives this shard "
                    f"{rows}; {_REBUILD}")
  return marker


def _load(path: Path, i: int, kind: str, shape: tuple, mmap: bool = False,
          dtype=None) -> np.ndarray:
  file = shard_paths(path, i)[kind]
  try:
    found = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise BankError(f"{file}: missing or damaged ({e}); {_REBUILD}") from None
  if found.shape != shape or (dtype is not None and found.dtype != dtype):
    raise BankError(f"{file}: {found.dtype} {list(found.shape)}, but {MANIFEST} gives "
                    f"{np.dtype(dtype) if dtype else ''} {list(shape)}; {_REBUILD}")
  return found


def shard_phi(bank: DiskBank, i: int, kind: str = "phi") -> np.ndarray:
  """Shard `i`'s φ (or `kind="search"` features), memory-mapped, in the stored dtype (float32
  or ml_dtypes.bfloat16). Checked after mapping against the manifest the bank was opened with
  (shape, dtype, and the build's generation in the shard's marker), so shards rebuilt under a
  run are an error, never read as the wrong data."""
  lo, hi = bank.shard_range(i)
  m = bank.manifest
  dim, dtype = ((m["feature_dim"], np.uint16 if m["dtype"] == "bfloat16" else np.float32)
                if kind == "phi" else (m["search"]["dim"], np.float32))
  rows = _load(bank.path, i, kind, (hi - lo, dim), mmap=True, dtype=dtype)
  _marker(bank.path, i, m)  # read after mapping: a later rebuild cannot change what is mapped
  return rows.view(ml_dtypes.bfloat16) if kind == "phi" and m["dtype"] == "bfloat16" else rows


def read_rows(bank: DiskBank, rows, kind: str = "phi") -> np.ndarray:
  """Rows `rows` (`[n]` int, any order) of φ (`kind="phi"`) or of the search features
  (`"search"`; φ itself for `none`) as `[n, dim]` float32. Only the shards the rows lie in are
  opened (memory-mapped), and only those rows' pages are read."""
  if kind not in ("phi", "search"):
    raise ValueError(f"kind must be 'phi' or 'search', got {kind!r}")
  if kind == "search" and bank.search.kind == "none":
    kind = "phi"
  rows = np.asarray(rows, np.int64).reshape(-1)
  if rows.size and not (rows.min() >= 0 and rows.max() < bank.num_images):
    raise ValueError(f"rows outside the bank's {bank.num_images}")
  dim = bank.manifest["feature_dim"] if kind == "phi" else bank.manifest["search"]["dim"]
  out = np.empty((len(rows), dim), np.float32)
  size = bank.manifest["shard_size"]
  shard = rows // size
  for i in np.unique(shard):
    lo, _ = bank.shard_range(int(i))
    mapped = shard_phi(bank, int(i), kind)
    sel = np.flatnonzero(shard == i)
    out[sel] = mapped[rows[sel] - lo]
  return out


def _read(bank: DiskBank, start: int, stop: int, kind: str) -> np.ndarray:
  if not 0 <= start <= stop <= bank.num_images:
    raise ValueError(f"rows [{start}, {stop}) outside the bank's {bank.num_images}")
  return read_rows(bank, np.arange(start, stop), kind)


def read_phi(bank: DiskBank, start: int = 0, stop: int | None = None) -> np.ndarray:
  """φ rows [start, stop) as `[n, D]` float32 (reads only those shards)."""
  return _read(bank, start, bank.num_images if stop is None else stop, "phi")


def read_search(bank: DiskBank, start: int = 0, stop: int | None = None) -> np.ndarray:
  """Search features rows [start, stop) as `[n, d]` float32 (φ itself for `none`)."""
  return _read(bank, start, bank.num_images if stop is None else stop, "search")


def attribute_vector(bank: DiskBank, neighbours: Neighbours, rows_per_read: int = 64
                     ) -> np.ndarray:
  """w = mean φ[target] − mean φ[source] streamed from disk: `[B, D]` float32.

  Only the chosen rows are read, a shard at a time and at most `rows_per_read` rows at once,
  so memory is `[B, D]` plus `rows_per_read` rows whatever the bank's size.
  """
  source, target = np.asarray(neighbours.source), np.asarray(neighbours.target)
  k = target.shape[-1]
  if source.shape != target.shape or source.ndim != 2:
    raise ValueError(f"neighbours must be two [B, K] arrays, got {source.shape}, "
                     f"{target.shape}")
  if min(source.min(), target.min()) < 0 or max(source.max(), target.max()) >= bank.num_images:
    raise ValueError(f"neighbour indices must lie in [0, {bank.num_images})")
  b = source.shape[0]
  # Sparse [B, N] selection weights as (row, query, weight) triples, sorted by row.
  rows = np.concatenate([target.ravel(), source.ravel()])
  queries = np.concatenate([np.repeat(np.arange(b), k)] * 2)
  to_target, to_source = vector_lib.difference(0.0, 1.0, k), vector_lib.difference(1.0, 0.0, k)
  signs = np.concatenate([np.full(b * k, to_target), np.full(b * k, to_source)]).astype(np.float32)
  order = np.argsort(rows, kind="stable")
  rows, queries, signs = rows[order], queries[order], signs[order]
  unique, inverse = np.unique(rows, return_inverse=True)
  w = np.zeros((b, bank.manifest["feature_dim"]), np.float32)
  size = bank.manifest["shard_size"]
  for shard in np.unique(unique // size):
    in_shard = np.flatnonzero(unique // size == shard)
    mapped = shard_phi(bank, int(shard))
    for c in range(0, len(in_shard), rows_per_read):
      chunk = in_shard[c:c + rows_per_read]
      phi = np.asarray(mapped[unique[chunk] - shard * size], np.float32)  # [r, D]
      sel = np.zeros((b, len(chunk)), np.float32)
      hit = np.isin(inverse, chunk)
      np.add.at(sel, (queries[hit], inverse[hit] - chunk[0]), signs[hit])
      w += sel @ phi
  return w
