"""The bank an edit run searches: φ of its images read by row, spread over every device.

One code path for both kinds of bank (`FeatureBank`):

* on disk (built by `experiments.build_bank`): rows are read from the memory-mapped shards,
  each host reading only what its own devices hold. The manifest must match what the run
  expects (`check_manifest`: weights file, pooling, preprocessing, taps, image size, the data
  it was built from); an unfinished bank is refused. Errors are `BankError`, one line naming
  the field; runs/run_bank.py reads what to expect from a run's config.
* in memory: a one-shard bank whose rows are φ of the bank images, computed when a device's
  rows are read.

`find_neighbours` puts the rows a run searches on a mesh of every device of every host — the
attribute rows (Hamming rule) or the search features (feature rule: φ, or the bank's search
reduction of it, with the queries reduced the same way) — and searches them with
`neighbours.search` (candidate masks, per-query groups and the test image's own row apply
there). It then reads onto the devices φ of just the rows some neighbour set uses (or, when the
search features are φ itself, keeps the rows already there), from which
`attribute_vector.from_rows` sums w where the rows live. A host's memory therefore holds its
devices' share of the search features, `[U, D]` φ of the U used rows split over the devices,
and the bank's attributes `[N, A]` and names — never φ of the whole bank on one host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dfi_jax.dfi import bank as bank_lib
from dfi_jax.dfi import features as features_lib
from dfi_jax.base import run_state
from dfi_jax.dfi import sharding
from dfi_jax.data import bank_cache
from dfi_jax.data import sources
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.dfi.neighbours import Neighbours

BankError = bank_lib.BankError  # runs.kit words it as a --config.bank_dir message


class FeatureBank(NamedTuple):
  """φ of a bank's `num_images` images, read by row (`read(kind, rows)`: kind "phi" or
  "search", `[n]` int rows -> `[n, dim]` float32)."""
  num_images: int
  feature_dim: int  # D
  search_dim: int  # d: the search features' dimension (D when they are φ itself)
  read: Callable[[str, np.ndarray], np.ndarray]
  reduce: Callable[[np.ndarray], np.ndarray]  # `[B, D]` φ of queries -> `[B, d]` search space
  searches_phi: bool  # the search features are φ itself
  dtype: str  # how φ is stored: float32, or bfloat16 (kept so on the devices)
  description: dict  # what the run's fingerprint records about the bank ({} in memory)


def in_memory(images, phi_of_images: Callable[[np.ndarray], np.ndarray],
              feature_dim: int) -> FeatureBank:
  """A one-shard bank of `images` (`[N, S, S, 3]`, an array or `LazyImages`): a row's φ is
  `phi_of_images(images[rows])` (`[n, S, S, 3]` -> `[n, D]`), computed when read."""

  def read(kind, rows):
    del kind  # the search features are φ itself
    rows = np.asarray(rows)
    if not len(rows):
      return np.zeros((0, feature_dim), np.float32)
    return np.asarray(phi_of_images(images[rows]), np.float32)

  return FeatureBank(len(images), feature_dim, feature_dim, read, lambda x: np.asarray(x),
                     True, "float32", {})


def kept(phi_rows: bank_cache.PhiRows, num_images: int) -> FeatureBank:
  """A one-shard bank of `num_images` rows whose φ `phi_rows` computes when a row is first read
  and keeps (generated faces': also on disk, `bank_cache`)."""
  return FeatureBank(num_images, phi_rows.dim, phi_rows.dim, lambda kind, rows: phi_rows(rows),
                     lambda x: np.asarray(x), True, "float32", {})


def from_phi(phi) -> FeatureBank:
  """A one-shard bank whose φ (`[N, D]`) is already computed (e.g. `api.load_editor`'s)."""
  return FeatureBank(len(phi), phi.shape[1], phi.shape[1],
                     lambda kind, rows: np.asarray(phi[np.asarray(rows)], np.float32),
                     lambda x: np.asarray(x), True, "float32", {})


def on_disk(disk: bank_lib.DiskBank) -> FeatureBank:
  """The bank `experiments.build_bank` wrote, opened with `bank_lib.open_bank` (`dfi/bank/`)."""
  spec, search = disk.spec, disk.search
  reduce = jax.jit(lambda x: bank_lib.reduce_for_search(x, spec, search))
  m = disk.manifest
  return FeatureBank(
      disk.num_images, m["feature_dim"], m["search"]["dim"],
      lambda kind, rows: bank_lib.read_rows(disk, rows, kind),
      lambda x: np.asarray(reduce(jnp.asarray(x, jnp.float32))), search.kind == "none",
      m["dtype"], dict(dtype=m["dtype"], search=m["search"], num_images=m["num_images"],
                       shard_size=m["shard_size"], weights_sha256=m["weights"].get("sha256")))


# ---------------------------------------------------------------------------------------
# A bank on disk, checked against what a run needs (runs/run_bank.py reads that from the run's
# config; runs/kit.py words a BankError for the flag).


class Expected(NamedTuple):
  """What a run needs of a bank on disk: `source`, the data it was built from (as `bank.build`
  records it); `taps`; and, once the network is loaded, `weights` (`{sha256, pooling,
  preprocessing}` of the run's network) and `spec` (its φ layout)."""
  source: dict
  taps: list
  weights: dict | None = None
  spec: features_lib.FeatureSpec | None = None


def _field(field: str, built, used) -> str:
  return (f"{field}: the bank was built with {built!r}, this run uses {used!r}; "
          "rebuild the bank with these settings (python -m experiments.build_bank) or "
          "choose a bank built with them")


def check_manifest(manifest: dict, expected: Expected) -> None:
  """Raises BankError, one line naming the field, unless the bank whose `manifest` this is was
  built for `expected`: its format, completeness, φ dtype, data, taps (and, given them, the
  same weights file and φ layout)."""
  if manifest.get("format") != bank_lib.FORMAT:
    raise BankError(f"format {manifest.get('format')!r}, expected {bank_lib.FORMAT!r}")
  if not manifest.get("complete"):
    raise BankError("the bank is unfinished; rerun the build_bank command that started it to "
                    "complete it")
  if manifest.get("dtype") not in bank_lib.DTYPES:
    raise BankError(f"φ stored as {manifest.get('dtype')!r}, expected one of {bank_lib.DTYPES}")
  source = manifest.get("source", {})
  for key, value in expected.source.items():
    if source.get(key) != value:
      raise BankError(_field(key, source.get(key), value))
  if manifest.get("taps") != list(expected.taps):
    raise BankError(_field("taps", manifest.get("taps"), list(expected.taps)))
  for key, value in (expected.weights or {}).items():
    built = manifest.get("weights", {}).get(key)
    if built != value:
      name = "weights (the file's sha256)" if key == "sha256" else key
      raise BankError(_field(name, built, value))
  if expected.spec is not None:
    built = [tuple(s) for s in manifest.get("tap_shapes", [])]
    if built != list(expected.spec.shapes) or manifest.get("feature_dim") != expected.spec.dim:
      raise BankError(_field("tap_shapes", built, list(expected.spec.shapes)))


def read_manifest(bank_dir: str, expected: Expected) -> dict | None:
  """The manifest of the bank in `bank_dir` (None for ""), checked (`check_manifest`); a
  missing, unfinished or mismatched bank raises BankError."""
  if not bank_dir:
    return None
  disk = bank_lib.read_manifest(Path(os.path.expanduser(bank_dir)))
  check_manifest(disk, expected)
  return disk


def open_checked(bank_dir: str, expected: Expected) -> bank_lib.DiskBank:
  """The bank in `bank_dir`, opened (`bank_lib.open_bank`) and checked (`check_manifest`);
  BankError otherwise."""
  try:
    disk = bank_lib.open_bank(Path(os.path.expanduser(bank_dir)))
  except OSError as e:
    raise BankError(str(e)) from None
  check_manifest(disk.manifest, expected)
  return disk


def weights_record(network) -> dict:
  """What a bank records about the network that made its φ (`runs.kit.Network`); a run must
  match its sha256, pooling and preprocessing."""
  return dict(sha256=getattr(network, "sha256", "") or run_state.file_sha256(network.path),
              description=network.provenance["description"], pooling=network.net.pooling,
              preprocessing=network.net.preprocessing)


# ---------------------------------------------------------------------------------------
# Rows on the mesh, and the neighbours of a run.


def bank_to_mesh(bank: bank_lib.DiskBank, mesh, what: str = "search",
                 axis: str = sharding.DATA, dtype=jnp.float32) -> jax.Array:
  """An on-disk bank's search features (`what="search"`) or φ (`"phi"`) as a global
  `[N_padded, d]` array split along `axis`; each host reads only the rows of its own devices."""
  if what not in ("search", "phi"):
    raise ValueError(f"what must be 'search' or 'phi', got {what!r}")
  read = bank_lib.read_search if what == "search" else bank_lib.read_phi
  dim = (bank.manifest["feature_dim"] if what == "phi" or bank.search.kind == "none"
         else bank.manifest["search"]["dim"])
  return sharding.rows_to_mesh(lambda a, b: read(bank, a, b), bank.num_images, dim, mesh, axis,
                               dtype)



def _to_mesh(bank: FeatureBank, kind: str, rows: np.ndarray, mesh) -> jax.Array:
  """Bank rows `rows` of `kind` as a `[len(rows)_padded, dim]` array split over `mesh`, each
  host reading only its devices' rows (bfloat16 φ stays bfloat16 on the devices)."""
  dim = bank.feature_dim if kind == "phi" or bank.searches_phi else bank.search_dim
  keep = (jnp.bfloat16 if bank.dtype == "bfloat16" and (kind == "phi" or bank.searches_phi)
          else jnp.float32)
  return sharding.rows_to_mesh(lambda a, b: bank.read(kind, rows[a:b]), len(rows), dim, mesh,
                               dtype=keep)


class Search(NamedTuple):
  """How a run finds neighbours: `k` per set; `rule` "attributes" (Hamming, when the test images
  have attributes) or "features" (the bank's search space); on `mesh` (None: every device of
  every host)."""
  k: int
  rule: str = "attributes"
  mesh: object = None


class Neighbourhood(NamedTuple):
  """Each edit's neighbours and the φ of the bank images they use."""
  sets: dict  # edit name -> Neighbours: `[B, K]` int32 bank indices, nearest first
  used: np.ndarray  # [U] sorted bank indices: the rows of `bank`
  bank: jax.Array  # [U_padded, D] φ of those bank images, split over the mesh


def find_neighbours(bank_data: sources.Bank, bank: FeatureBank, tests: sources.TestImages,
                    phi_x: np.ndarray, masks: dict, search: Search) -> Neighbourhood:
  """The source and target neighbours of every test image for every edit of `masks`.

  With known test attributes and `search.rule == "attributes"`: ranked by Hamming distance,
  within the test image's group when both sides have groups; φ is then read only for the bank
  images some neighbour set uses (not all of LFW's 13k at 55 GB). Otherwise ranked by distance
  to `phi_x` (`[B, D]`) in the bank's search space, over the whole bank. A test image taken from
  the bank (`tests.bank_index`) is never its own neighbour. The search is `neighbours.search`:
  equal, index for index, whatever the mesh.

  Args:
    masks: edit name -> its `[N]` bool `Candidates` (`neighbours.candidate_masks`).
  """
  mesh = sharding.make_mesh() if search.mesh is None else search.mesh
  by_attributes = tests.attributes is not None and search.rule == "attributes"
  allowed = None
  if by_attributes:
    if tests.group is not None and bank_data.group is not None:
      allowed = tests.group[:, None] == bank_data.group[None, :]
    rows = sharding.shard_rows(np.asarray(bank_data.attributes, bool), mesh)
    queries, metric = np.asarray(tests.attributes, bool), "hamming"
  else:
    rows = _to_mesh(bank, "search", np.arange(bank.num_images), mesh)
    queries, metric = bank.reduce(phi_x), "l2"
  knn = neighbours_lib.knn_for(mesh, search.k, metric)
  sets = {name: Neighbours(*(np.asarray(n) for n in neighbours_lib.search(
      knn, rows, queries, neighbours_lib.Candidates(*pair), tests.bank_index, allowed)))
          for name, pair in masks.items()}
  if not by_attributes and bank.searches_phi:  # φ of the whole bank is on the devices already
    return Neighbourhood(sets, np.arange(bank.num_images), rows)
  used = np.unique(np.concatenate([np.ravel(n) for nb in sets.values() for n in nb]))
  return Neighbourhood(sets, used, _to_mesh(bank, "phi", used, mesh))
