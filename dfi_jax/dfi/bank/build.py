"""Building a bank: φ of a stream, shard by shard, resumable, with the manifest written last."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from dfi_jax.base import files as files_lib
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi.bank.layout import BankError, DTYPES, FORMAT, MANIFEST, shard_paths
from dfi_jax.dfi.bank.search import SearchReduction, reduce_for_search, search_dim
from dfi_jax.dfi.bank.streams import ImageStream


# ---------------------------------------------------------------------------------------
# Building.


class Hosts(NamedTuple):
  """Which shards this host builds: `i % count == index`; process 0 writes the manifest;
  `barrier(name)` waits for every host (`sharding.barrier`)."""
  index: int = 0
  count: int = 1
  barrier: Callable[[str], None] | None = None


class BuildReport(NamedTuple):
  path: Path
  built: list[int]  # shard indices computed by this call
  skipped: list[int]  # already on disk (resumed)
  complete: bool


@contextlib.contextmanager
def _atomic_npy(path: Path, dtype, shape) -> Iterator[np.ndarray]:
  """A memory-mapped `.npy` under a temp name, renamed to `path` only if the block succeeds."""
  tmp = files_lib.temp_path_beside(path)
  try:
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    _reserve(tmp)
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


def _reserve(path: Path) -> None:
  """Allocates `path`'s blocks now: a memory map of a sparse file on a full disk would die by
  SIGBUS at the first page written; this way it is an OSError (ENOSPC) naming the file."""
  with open(path, "rb+") as f:
    try:
      os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as e:
      if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without it: go on
        return
      raise OSError(e.errno, f"{path.parent}: cannot reserve {os.fstat(f.fileno()).st_size} "
                    f"bytes for a shard ({e.strerror}); free some space and rerun the same "
                    "command (finished shards are kept)") from None


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


def _shard_done(path: Path, i: int, rows: int, generation: str) -> bool:
  paths = shard_paths(path, i)
  try:
    marker = json.loads(paths["marker"].read_text())
    same = marker.get("generation", generation) == generation  # older markers have none
    return marker["rows"] == rows and same and all(
        np.load(paths[k], mmap_mode="r").shape[0] == rows for k in marker["arrays"])
  except (OSError, ValueError, KeyError):
    return False


class _Features(NamedTuple):
  """How a shard's images become its arrays: `phi_of` (`images [b, S, S, 3] -> [b, dim]`)
  stored as `dtype`; `reduce_fn` (`φ [b, dim] -> [b, search_dim]` float32, None for search
  "none") gives the search features."""
  phi_of: Callable
  dim: int
  dtype: str
  reduce_fn: Callable | None
  search_dim: int


def build(path: str | os.PathLike, stream: ImageStream, phi_fn: Callable, params,
          spec: features_lib.FeatureSpec, *, shard_size: int = 256, dtype: str = "float32",
          search: SearchReduction = SearchReduction(), batch_size: int = 32,
          weights: dict | None = None, hosts: Hosts = Hosts(), overwrite: bool = False,
          progress: Callable[[int], None] | None = None,
          stop_after: int | None = None) -> BuildReport:
  """Computes φ for every image of `stream` and writes the bank to `path`, resuming.

  Keyword-only builder; its keywords:
    `shard_size`: images per shard (resume granularity; at 200² φ, 64 images ≈ 265 MB).
    `dtype`: on-disk dtype of φ, `float32` or `bfloat16` (search features stay float32).
    `search`: the search reduction (`SearchReduction`).
    `batch_size`: images per φ call (one compile: the last batch is padded).
    `weights`: what produced φ (path, provenance); a resumed build must match it.
    `hosts`: this host's share of the shards (default: one host builds all).
    `overwrite`: replace a bank built with other settings instead of raising.
    `progress`: called with images done (finished shards count at once on resume).
    `stop_after`: build at most this many shards, then return (tests simulate interruption).

  Args:
    phi_fn: `(params, images [b, S, S, 3]) -> [b, D]` (e.g. `features.make_phi(net)`).
  """
  _check_build_arguments(stream, dtype, shard_size, batch_size)
  path = Path(path)
  settings = _settings(stream, spec, search, dtype, shard_size, weights or {})
  files_lib.make_folder(path / "shards")
  settings = _start_generation(path, settings, hosts, overwrite)
  generation = settings["generation"]
  features = _Features(lambda images: phi_fn(params, jnp.asarray(images, jnp.float32)),
                       spec.dim, dtype,
                       (jax.jit(lambda x: reduce_for_search(x, spec, search))
                        if search.kind != "none" else None), search_dim(search, spec))
  built, skipped = [], []
  for i in range(settings["num_shards"]):
    if i % hosts.count != hosts.index:
      continue
    start, stop = i * shard_size, min((i + 1) * shard_size, stream.num_images)
    if _shard_done(path, i, stop - start, generation):
      skipped.append(i)
      if progress is not None:
        progress(stop - start)
      continue
    if stop_after is not None and len(built) >= stop_after:
      break
    _build_shard(path, i, generation, range(start, stop, batch_size), stream, features,
                 progress)
    built.append(i)

  if hosts.barrier is not None:
    hosts.barrier("bank_shards")
  complete = all(_shard_done(path, i, min((i + 1) * shard_size, stream.num_images) - i *
                             shard_size, generation) for i in range(settings["num_shards"]))
  if complete and hosts.index == 0:
    files_lib.atomic_write_json(path / MANIFEST,
                                files_lib.jsonable(dict(settings, complete=True)))
  return BuildReport(path, built, skipped, complete)


def _check_build_arguments(stream: ImageStream, dtype: str, shard_size: int,
                           batch_size: int) -> None:
  if dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
  if shard_size <= 0 or batch_size <= 0:
    raise ValueError(f"shard_size and batch_size must be positive, got {shard_size}, "
                     f"{batch_size}")
  if stream.num_images <= 0:
    raise ValueError("the dataset has no images")


def _previous_manifest(path: Path, settings: dict, hosts: Hosts, overwrite: bool) -> dict:
  """The manifest already at `path` if it was built with `settings` (a resume), else `{}`: a
  damaged one or one with other settings raises, or with `overwrite` is dropped (host 0 empties
  `shards/`)."""
  manifest_path = path / MANIFEST
  if not manifest_path.exists():
    return {}
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
  if old_settings != files_lib.jsonable(settings):
    if not overwrite:
      diff = [k for k in settings if old_settings[k] != files_lib.jsonable(settings)[k]]
      raise BankError(f"{path} holds a bank built with other settings (different "
                      f"{', '.join(diff)}); choose another directory or overwrite it "
                      "(build_bank --overwrite)")
    if hosts.index == 0:
      for f in (path / "shards").iterdir():
        f.unlink()
    old = {}
  return old


def _start_generation(path: Path, settings: dict, hosts: Hosts, overwrite: bool) -> dict:
  """`settings` plus the build's generation, once host 0 has written the manifest
  (`complete=False`) and every host has seen it."""
  old = _previous_manifest(path, settings, hosts, overwrite)
  # A new build gets a new generation (a resumed one keeps it); its shards carry it, so a run
  # that opened the bank notices shards rebuilt under it (`read.check_shard`).
  generation = old.get("generation") if old else secrets.token_hex(8)  # (banks before: None)
  if hosts.index == 0:
    files_lib.atomic_write_json(path / MANIFEST, files_lib.jsonable(
        dict(settings, generation=generation, complete=False)))
  if hosts.barrier is not None:
    hosts.barrier("bank_manifest")
    generation = json.loads((path / MANIFEST).read_text())["generation"]  # process 0's
  return dict(settings, generation=generation)


def _build_shard(path: Path, i: int, generation: str | None, batches: range, stream: ImageStream,
                 features: _Features, progress) -> None:
  """Shard `i`: rows `batches.start:batches.stop` of `stream`, φ in batches of `batches.step`
  (the last padded: one compiled shape), search features when `features.reduce_fn`; its
  marker written last."""
  start, stop, batch_size = batches.start, batches.stop, batches.step
  dtype, reduce_fn = features.dtype, features.reduce_fn
  store = np.float32 if dtype == "float32" else np.uint16
  paths = shard_paths(path, i)
  rows, names = stop - start, []
  with contextlib.ExitStack() as files:
    phi_out = files.enter_context(_atomic_npy(paths["phi"], store, (rows, features.dim)))
    attr_out = files.enter_context(
        _atomic_npy(paths["attributes"], bool, (rows, len(stream.attribute_names))))
    search_out = (files.enter_context(
        _atomic_npy(paths["search"], np.float32, (rows, features.search_dim)))
                  if reduce_fn is not None else None)
    group_out = (files.enter_context(_atomic_npy(paths["group"], np.int32, (rows,)))
                 if stream.has_group else None)
    for a in batches:
      b = min(a + batch_size, stop)
      images, attributes, batch_names, group = stream.read(a, b)
      if len(images) < batch_size:  # pad: one compiled shape for every batch
        images = np.concatenate([images, np.repeat(images[-1:], batch_size - len(images), 0)])
      phi = features.phi_of(images)
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
  arrays = (["phi", "attributes"] + (["search"] if reduce_fn is not None else []) +
            (["group"] if stream.has_group else []))
  files_lib.atomic_write_json(paths["marker"], dict(shard=i, start=start, rows=rows,
                                                   names=names, arrays=arrays,
                                                   generation=generation))
