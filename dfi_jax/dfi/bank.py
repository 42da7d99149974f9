"""The feature bank on disk: φ of a whole dataset, built in streamed chunks, stored in shards.

Layout of a bank directory (format `dfi_jax-bank-v1`):

  bank.json                     the manifest: settings, φ layout, attribute names, edits, shard
                                table; `complete` once every shard is on disk
  shards/00012.phi.npy          `[n, D]` φ rows of shard 12: float32, or bfloat16 stored as its
                                uint16 bit pattern (NumPy has no bfloat16; the manifest says so)
  shards/00012.search.npy       `[n, d]` float32 search reduction (absent for `search="none"`)
  shards/00012.attributes.npy   `[n, A]` bool
  shards/00012.group.npy        `[n]` int32 neighbour group (LFW's gender), when the data has one
  shards/00012.json             the shard's done marker (rows, image names), written last

Why `.npy` shards and a JSON manifest rather than tensorstore/zarr (installed with orbax): every
shard is an ordinary file written to a temp name and renamed, so "finished" is simply "its
marker exists" and an interrupted build resumes at the first missing shard; `np.load(...,
mmap_mode="r")` maps a shard without reading it, so gathering K neighbour rows touches only
those rows' pages; hosts of a pod write disjoint shards with no coordination beyond one final
barrier; and any NumPy reads the result. Zarr would add chunk-level writes we do not need (a
shard is written once, whole) and a dependency on the orbax stack's versions.

Peak memory does not grow with the dataset: images are read `batch` at a time, φ goes straight
into the shard's memory-mapped temp file, and nothing of a finished shard is kept. A run that
needs only neighbour *means* never loads φ: neighbours are searched in the (small) search table,
and `attribute_vector` streams just the chosen rows shard by shard into a `[B, D]` accumulator.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from dfi_jax.data import banks
from dfi_jax.data import faces
from dfi_jax.dfi import features as features_lib
from dfi_jax.data import image_io
from dfi_jax.data.sources import Edit
from dfi_jax.dfi.neighbours import Neighbours

FORMAT = "dfi_jax-bank-v1"
DTYPES = ("float32", "bfloat16")
SEARCH_KINDS = ("none", "pool", "projection")
MANIFEST = "bank.json"
_PROJECTION_BLOCK = 2048  # rows of the random projection made at a time


class BankError(ValueError):
  """A bank directory that is missing, incomplete, or built with other settings."""


# ---------------------------------------------------------------------------------------
# Search reduction: a smaller view of φ used only to rank neighbours.


class SearchReduction(NamedTuple):
  """`none`: search in φ itself. `pool`: each tap average-pooled to at most `size`×`size`
  positions. `projection`: φ times a fixed `[D, size]` random ±1 matrix / √size (Achlioptas'
  Johnson-Lindenstrauss projection), generated block by block from `seed`, never whole (at
  200² and size 512 it would be 2 GB)."""
  kind: str = "none"
  size: int = 0
  seed: int = 0


def parse_search(text: str, seed: int = 0) -> SearchReduction:
  """`"none"`, `"pool:4"` or `"projection:512"` -> SearchReduction."""
  kind, _, size = text.partition(":")
  if kind == "none" and not size:
    return SearchReduction()
  if kind in ("pool", "projection") and size.isdigit() and int(size) > 0:
    return SearchReduction(kind, int(size), int(seed))
  raise ValueError(f"search reduction {text!r}: expected 'none', 'pool:P' or 'projection:D' "
                   "with a positive integer")


def _pool_matrix(n: int, p: int) -> np.ndarray:
  """`[p, n]` adaptive average pooling (PyTorch's bins: floor(i·n/p) to ceil((i+1)·n/p))."""
  m = np.zeros((p, n), np.float32)
  for i in range(p):
    lo, hi = (i * n) // p, -((-(i + 1) * n) // p)
    m[i, lo:hi] = 1.0 / (hi - lo)
  return m


def _rademacher(rows: jax.Array, dim: int, seed: int) -> jax.Array:
  """`[len(rows), dim]` ±1 entries of the projection, a pure hash of (row, column, seed).

  A hash, not jax.random: any block is recomputed anywhere without state, and it compiles in
  milliseconds (threefry kernels take seconds each on small CPUs).
  """
  h = (rows.astype(jnp.uint32)[:, None] * jnp.uint32(0x9E3779B1)
       + jnp.arange(dim, dtype=jnp.uint32)[None] * jnp.uint32(0x85EBCA6B)
       + jnp.uint32(seed * 0xC2B2AE35 % (1 << 32)))
  for shift, mult in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):  # murmur3's finaliser
    h = (h ^ (h >> shift)) * jnp.uint32(mult)
  h = h ^ (h >> 16)
  return jnp.where(h >> 31 == 1, 1.0, -1.0).astype(jnp.float32)


def search_dim(reduction: SearchReduction, spec: features_lib.FeatureSpec) -> int:
  """Dimension d of the search features."""
  if reduction.kind == "none":
    return spec.dim
  if reduction.kind == "pool":
    return sum(min(reduction.size, h) * min(reduction.size, w) * c for h, w, c in spec.shapes)
  return reduction.size


def reduce_for_search(phi: jax.Array, spec: features_lib.FeatureSpec,
                      reduction: SearchReduction) -> jax.Array:
  """`[B, D]` φ -> `[B, d]` float32 search features (jit-able; same function for bank and
  queries, so both live in one space)."""
  phi = jnp.asarray(phi, jnp.float32)
  if reduction.kind == "none":
    return phi
  if reduction.kind == "pool":
    parts = []
    for (h, w, c), flat in zip(spec.shapes, features_lib.split(phi, spec).values()):
      ph = _pool_matrix(h, min(reduction.size, h))
      pw = _pool_matrix(w, min(reduction.size, w))
      pooled = jnp.einsum("ph,bhwc,qw->bpqc", ph, flat.reshape(-1, h, w, c), pw)
      parts.append(pooled.reshape(phi.shape[0], -1))
    return jnp.concatenate(parts, axis=-1)
  if reduction.kind == "projection":
    dim, block = reduction.size, _PROJECTION_BLOCK
    blocks = -(-phi.shape[1] // block)
    padded = jnp.pad(phi, ((0, 0), (0, blocks * block - phi.shape[1])))

    def body(i, acc):
      rows = _rademacher(i * block + jnp.arange(block), dim, reduction.seed)
      return acc + jax.lax.dynamic_slice_in_dim(padded, i * block, block, axis=1) @ rows

    acc = jax.lax.fori_loop(0, blocks, body, jnp.zeros((phi.shape[0], dim), jnp.float32))
    return acc / math.sqrt(dim)
  raise ValueError(f"search kind must be one of {SEARCH_KINDS}, got {reduction.kind!r}")


# ---------------------------------------------------------------------------------------
# Where the images come from, a range at a time.


class Rows(NamedTuple):
  """Images [start, stop) of a dataset."""
  images: np.ndarray  # [n, S, S, 3] float32 in [0, 1]
  attributes: np.ndarray  # [n, A] bool
  names: list[str]
  group: np.ndarray | None = None  # [n] int: neighbours only within the query's group


class ImageStream(NamedTuple):
  """A dataset read in ranges: `read(start, stop) -> Rows`. `description` identifies it in
  the manifest; `has_group`: rows carry a neighbour group."""
  num_images: int
  attribute_names: tuple[str, ...]
  edits: tuple[Edit, ...]
  read: Callable[[int, int], Rows]
  description: dict
  has_group: bool = False


def synthetic_stream(num_images: int, image_size: int, first_seed: int = 0) -> ImageStream:
  """Generated faces with seeds [first_seed, first_seed + num_images), rendered on demand."""
  def read(start, stop):
    seeds = range(first_seed + start, first_seed + stop)
    images, attributes = faces.generate(seeds, image_size)
    return Rows(images, attributes, [f"face{s}" for s in seeds])

  return ImageStream(num_images, tuple(faces.ATTRIBUTES),
                     tuple(Edit(a, a) for a in faces.ATTRIBUTES), read,
                     dict(data="synthetic", bank_size=num_images, bank_seed=first_seed,
                          image_size=image_size))


# Streaming readers by `config.data` (a dataset could add one reading array_record ranges).
# Without one, `stream_from_config` falls back to `banks.load_bank`.
STREAMS: dict[str, Callable[..., ImageStream]] = {
    "synthetic": lambda c: synthetic_stream(c.bank_size, c.image_size, c.bank_seed)}


def stream_from_config(config) -> ImageStream:
  """The bank images of `config.data`, streamed when a reader is registered in `STREAMS`;
  otherwise read whole by `banks.load_bank` and sliced (memory then grows with the data)."""
  if config.data in STREAMS:
    return STREAMS[config.data](config)
  bank = banks.load_bank(config)
  group = bank.group

  def read(a, b):
    return Rows(bank.images[a:b], bank.attributes[a:b], bank.names[a:b],
                None if group is None else group[a:b])

  return ImageStream(len(bank.images), tuple(bank.attribute_names), tuple(bank.edits), read,
                     dict(data=config.data, image_size=config.image_size,
                          bank_size=len(bank.images)), group is not None)


# ---------------------------------------------------------------------------------------
# Building.


class BuildReport(NamedTuple):
  path: Path
  built: list[int]  # shard indices computed by this call
  skipped: list[int]  # already on disk (resumed)
  complete: bool


def _shard_paths(path: Path, i: int) -> dict[str, Path]:
  stem = path / "shards" / f"{i:05d}"
  return {k: Path(f"{stem}.{k}.npy") for k in ("phi", "search", "attributes", "group")} | {
      "marker": Path(f"{stem}.json")}


@contextlib.contextmanager
def _atomic_npy(path: Path, dtype, shape) -> Iterator[np.ndarray]:
  """A memory-mapped `.npy` under a temp name, renamed to `path` only if the block succeeds."""
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  os.close(fd)
  try:
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    yield out
    out.flush()
    del out
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def _settings(stream, spec, reduction, dtype, shard_size, weights: dict) -> dict:
  return dict(format=FORMAT, num_images=stream.num_images, shard_size=shard_size,
              num_shards=-(-stream.num_images // shard_size), dtype=dtype,
              feature_dim=spec.dim, taps=list(spec.taps),
              tap_shapes=[list(s) for s in spec.shapes],
              search=dict(kind=reduction.kind, size=reduction.size, seed=reduction.seed,
                          dim=search_dim(reduction, spec)),
              attribute_names=list(stream.attribute_names),
              edits=[[e.name, e.target_attribute, e.source_attribute] for e in stream.edits],
              has_group=stream.has_group,
              source=stream.description, weights=weights)


def _shard_done(path: Path, i: int, rows: int) -> bool:
  paths = _shard_paths(path, i)
  try:
    marker = json.loads(paths["marker"].read_text())
    return marker["rows"] == rows and all(
        np.load(paths[k], mmap_mode="r").shape[0] == rows for k in marker["arrays"])
  except (OSError, ValueError, KeyError):
    return False


def build(path: str | os.PathLike, stream: ImageStream, phi_fn: Callable, params,
          spec: features_lib.FeatureSpec, *, shard_size: int = 256, dtype: str = "float32",
          search: SearchReduction = SearchReduction(), batch_size: int = 32,
          weights: dict | None = None, process_index: int = 0, process_count: int = 1,
          barrier: Callable[[str], None] | None = None, overwrite: bool = False,
          progress: Callable[[int], None] | None = None,
          stop_after: int | None = None) -> BuildReport:
  """Computes φ for every image of `stream` and writes the bank to `path`, resuming.

  Args:
    phi_fn: `(params, images [b, S, S, 3]) -> [b, D]` (e.g. `features.make_phi(net)`).
    shard_size: images per shard (resume granularity; at 200² φ, 64 images ≈ 265 MB).
    dtype: on-disk dtype of φ, `float32` or `bfloat16` (search features stay float32).
    batch_size: images per φ call (one compile: the last batch is padded).
    weights: what produced φ (path, provenance); a resumed build must match it.
    process_index, process_count: this host builds shards `i % process_count ==
      process_index`; process 0 writes the manifest; `barrier(name)` syncs hosts.
    overwrite: replace a bank built with other settings instead of raising.
    progress: called with images done (finished shards count at once on resume).
    stop_after: build at most this many shards, then return (tests simulate interruption).
  """
  if dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
  if shard_size <= 0 or batch_size <= 0:
    raise ValueError(f"shard_size and batch_size must be positive, got {shard_size}, "
                     f"{batch_size}")
  if stream.num_images <= 0:
    raise ValueError("the dataset has no images")
  path = Path(path)
  settings = _settings(stream, spec, search, dtype, shard_size, weights or {})
  (path / "shards").mkdir(parents=True, exist_ok=True)
  manifest_path = path / MANIFEST
  if manifest_path.exists():
    try:
      old = json.loads(manifest_path.read_text())
      if not isinstance(old, dict):
        raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
      if not overwrite:
        raise BankError(f"{manifest_path} is damaged ({e}); rebuild the bank there with "
                        "build_bank --overwrite, or choose another directory") from None
      old = {}
    old_settings = {k: old.get(k) for k in settings}
    if old_settings != image_io.jsonable(settings):
      if not overwrite:
        diff = [k for k in settings if old_settings[k] != image_io.jsonable(settings)[k]]
        raise BankError(f"{path} holds a bank built with other settings (different "
                        f"{', '.join(diff)}); choose another directory or overwrite it "
                        "(build_bank --overwrite)")
      if process_index == 0:
        for f in (path / "shards").iterdir():
          f.unlink()
  if process_index == 0:
    image_io.atomic_write_json(manifest_path, image_io.jsonable(dict(settings, complete=False)))
  if barrier is not None:
    barrier("bank_manifest")

  reduce_fn = jax.jit(lambda x: reduce_for_search(x, spec, search))
  store = np.float32 if dtype == "float32" else np.uint16
  built, skipped = [], []
  for i in range(settings["num_shards"]):
    if i % process_count != process_index:
      continue
    start, stop = i * shard_size, min((i + 1) * shard_size, stream.num_images)
    if _shard_done(path, i, stop - start):
      skipped.append(i)
      if progress is not None:
        progress(stop - start)
      continue
    if stop_after is not None and len(built) >= stop_after:
      break
    _build_shard(path, i, start, stop, stream, phi_fn, params, reduce_fn, search, spec,
                 store, dtype, batch_size, progress)
    built.append(i)

  if barrier is not None:
    barrier("bank_shards")
  complete = all(_shard_done(path, i, min((i + 1) * shard_size, stream.num_images) - i *
                             shard_size) for i in range(settings["num_shards"]))
  if complete and process_index == 0:
    image_io.atomic_write_json(manifest_path, image_io.jsonable(dict(settings, complete=True)))
  return BuildReport(path, built, skipped, complete)


def _build_shard(path, i, start, stop, stream, phi_fn, params, reduce_fn, search, spec, store,
                 dtype, batch_size, progress) -> None:
  paths = _shard_paths(path, i)
  rows, names = stop - start, []
  d = search_dim(search, spec)
  with contextlib.ExitStack() as files:
    phi_out = files.enter_context(_atomic_npy(paths["phi"], store, (rows, spec.dim)))
    attr_out = files.enter_context(
        _atomic_npy(paths["attributes"], bool, (rows, len(stream.attribute_names))))
    search_out = (files.enter_context(_atomic_npy(paths["search"], np.float32, (rows, d)))
                  if search.kind != "none" else None)
    group_out = (files.enter_context(_atomic_npy(paths["group"], np.int32, (rows,)))
                 if stream.has_group else None)
    for a in range(start, stop, batch_size):
      b = min(a + batch_size, stop)
      images, attributes, batch_names, group = stream.read(a, b)
      if len(images) < batch_size:  # pad: one compiled shape for every batch
        images = np.concatenate([images, np.repeat(images[-1:], batch_size - len(images), 0)])
      phi = phi_fn(params, jnp.asarray(images, jnp.float32))
      if search_out is not None:
        search_out[a - start:b - start] = np.asarray(reduce_fn(phi))[:b - a]
      phi = np.asarray(phi)[:b - a]
      phi_out[a - start:b - start] = (phi if dtype == "float32" else
                                      phi.astype(ml_dtypes.bfloat16).view(np.uint16))
      attr_out[a - start:b - start] = np.asarray(attributes, bool)
      if group_out is not None:
        group_out[a - start:b - start] = np.asarray(group, np.int32)
      names += list(batch_names)
      if progress is not None:
        progress(b - a)
  arrays = (["phi", "attributes"] + (["search"] if search.kind != "none" else []) +
            (["group"] if stream.has_group else []))
  image_io.atomic_write_json(paths["marker"], dict(shard=i, start=start, rows=rows,
                                                   names=names, arrays=arrays))


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
  for i in range(manifest["num_shards"]):
    paths = _shard_paths(path, i)
    attributes.append(np.load(paths["attributes"]))
    names += json.loads(paths["marker"].read_text())["names"]
    if manifest.get("has_group"):
      group.append(np.load(paths["group"]))
  return DiskBank(path, manifest, np.concatenate(attributes), names,
                  np.concatenate(group) if group else None)


def shard_phi(bank: DiskBank, i: int) -> np.ndarray:
  """Shard `i`'s φ, memory-mapped, in the stored dtype (float32 or ml_dtypes.bfloat16)."""
  rows = np.load(_shard_paths(bank.path, i)["phi"], mmap_mode="r")
  return rows.view(ml_dtypes.bfloat16) if bank.manifest["dtype"] == "bfloat16" else rows


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
    mapped = (shard_phi(bank, int(i)) if kind == "phi" else
              np.load(_shard_paths(bank.path, int(i))["search"], mmap_mode="r"))
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
  signs = np.concatenate([np.full(b * k, 1.0 / k), np.full(b * k, -1.0 / k)]).astype(np.float32)
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
