"""Neighbour search: the source and target neighbours of a query in the bank, the one home of it.

For the edit "add attribute a" the source candidates are the bank images *without* a, the
target candidates those *with* a (`candidate_masks`); each set is ranked by distance to the
query, the query's own bank row excluded, and the first K kept. Ties go to the lowest bank
index. The distances:

* `hamming` over all binary attributes (the official demo1; attribute rows as the bank);
* `l2`, squared Euclidean in a search space (φ or a reduction of it: the paper's text, and any
  image without known attributes).

Every search runs here:

* `make_knn` / `search`: exact KNN on a mesh — the bank's leading axis `N` split over the
  devices (`sharding.shard_rows`), a per-device top-k then one all-gather of `[B, devices·k]`
  candidates and a global top-k. That gives exactly the one-device answer, ties included:
  `lax.top_k` keeps the lower position first among equal keys, and the gathered candidates of
  equal key sit in bank-index order. Edit runs (through `feature_bank.find_neighbours`) and the
  probes (`nearest`, host arrays in, host arrays out) use it.
* `streamed`: the same rule over a bank read batch by batch (inpainting's masked φ), a running
  top-k on the host.
* `hamming_order` and `first_k`: ranking a list of candidates (high resolution's attribute
  ranking and its landmark re-rank).

The slow, obvious versions the tests hold these against live in tests/neighbours_reference.py.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dfi_jax.data.sources import Edit
from dfi_jax.dfi.sharding.mesh import DATA, make_mesh, replicated, shard_rows

METRICS = ("l2", "hamming")


class Neighbours(NamedTuple):
  """Bank indices: `source` and `target`, each `[B, K]` int32, nearest first."""
  source: jax.Array
  target: jax.Array


class Candidates(NamedTuple):
  """`[N]` bool masks of the bank rows a source and a target neighbour may be."""
  source: np.ndarray
  target: np.ndarray


def attribute_index(names: Sequence[str], valid: Sequence[str]) -> list[int]:
  """Indices of `names` in `valid`; an unknown name is a ValueError listing the valid ones."""
  unknown = [n for n in names if n not in valid]
  if unknown:
    raise ValueError(f"unknown attribute(s) {unknown}; valid attributes are {list(valid)}")
  return [list(valid).index(n) for n in names]


def candidate_masks(bank_attributes: np.ndarray, edit: Edit, names: Sequence[str]
                    ) -> Candidates:
  """`[N]` bool source and target candidate masks of `edit` over the bank."""
  (b,) = attribute_index([edit.target_attribute], names)
  has_b = np.asarray(bank_attributes[:, b], bool)
  if edit.source_attribute is None:
    return Candidates(~has_b, has_b)
  (a,) = attribute_index([edit.source_attribute], names)
  has_a = np.asarray(bank_attributes[:, a], bool)
  return Candidates(has_a & ~has_b, has_b & ~has_a)


def check_candidates(source: np.ndarray, target: np.ndarray, k: int, name: str) -> None:
  """Raises if either candidate set of edit `name` has fewer than `k` images."""
  if k <= 0:
    raise ValueError(f"K must be positive, got {k}")
  n_src, n_tgt = int(np.sum(source)), int(np.sum(target))
  if min(n_src, n_tgt) < k:
    raise ValueError(f"K={k} but edit {name!r} has only {n_src} source and {n_tgt} target "
                     f"candidates in the bank; lower K or enlarge the bank")


def edit_masks(bank_attributes: np.ndarray, edits: Sequence[Edit], names: Sequence[str],
               k: int) -> dict[str, Candidates]:
  """Edit name -> its `[N]` source and target candidate masks, each checked to hold `k`."""
  masks = {}
  for e in edits:
    masks[e.name] = candidate_masks(bank_attributes, e, names)
    check_candidates(*masks[e.name], k, e.name)
  return masks



# ---------------------------------------------------------------------------------------
# KNN on a mesh.


def _local_first_k(key: jax.Array, index: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """`[B, n]` keys (inf = not a candidate) -> the k smallest as (-key, global index)."""
  values, pos = jax.lax.top_k(-key, min(k, key.shape[-1]))
  return values, index[pos]


def _merge(values: jax.Array, index: jax.Array, k: int, axis: str) -> jax.Array:
  """Per-device `[B, k]` candidates -> global `[B, k]` indices, lowest index first on ties."""
  values = jax.lax.all_gather(values, axis, axis=1, tiled=True)  # device order = index order
  index = jax.lax.all_gather(index, axis, axis=1, tiled=True)
  _, pos = jax.lax.top_k(values, k)
  return jnp.take_along_axis(index, pos, axis=1).astype(jnp.int32)


def _distances(bank: jax.Array, queries: jax.Array, metric: str) -> jax.Array:
  """`[n, d]` bank rows and `[B, d]` queries -> `[B, n]` float32 distances."""
  if metric == "l2":
    bank = bank.astype(jnp.float32)
    bank_sq = jnp.sum(bank * bank, axis=-1)
    return jax.vmap(lambda q: bank_sq - 2.0 * bank @ q + jnp.sum(q * q))(
        queries.astype(jnp.float32))
  return jax.vmap(lambda q: jnp.sum(bank != q, axis=-1).astype(jnp.float32))(queries)


def make_knn(mesh: Mesh, k: int, metric: str = "l2", axis: str = DATA) -> Callable:
  """A jitted sharded KNN; keep it (`knn_for`): batches of the same shape reuse its code.

  Returns `knn(bank, queries, source, target, exclude, allowed) -> Neighbours` with
    bank: `[N, d]` (float search features for `l2`, bool attributes for `hamming`), split
      along `axis` (see `sharding.shard_rows`; N a multiple of the axis size);
    queries: `[B, d]`; source, target: `[N]` bool candidate masks (False on padding rows);
    exclude: `[B]` int32 bank index of each query itself, or -1;
    allowed: `[B, N]` bool per-query restriction (all True for none).
  `search` pads and places host arrays for it.
  """
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
  if k <= 0:
    raise ValueError(f"k must be positive, got {k}")

  def local(bank, queries, source, target, exclude, allowed):
    n = bank.shape[0]
    index = jax.lax.axis_index(axis) * n + jnp.arange(n)
    distance = _distances(bank, queries, metric)
    ok = allowed & (index[None] != exclude[:, None])
    out = []
    for mask in (source, target):
      key = jnp.where(ok & mask[None], distance, jnp.inf)
      out.append(_merge(*_local_first_k(key, index, k), k, axis))
    return tuple(out)

  sharded = jax.shard_map(local, mesh=mesh,
                          in_specs=(P(axis, None), P(), P(axis), P(axis), P(), P(None, axis)),
                          out_specs=(P(), P()), check_vma=False)

  @jax.jit
  def knn(bank, queries, source, target, exclude, allowed):
    return Neighbours(*sharded(bank, queries, source, target, exclude, allowed))

  return knn


@functools.lru_cache(maxsize=16)
def knn_for(mesh: Mesh, k: int, metric: str = "l2") -> Callable:
  """`make_knn(mesh, k, metric)`, made once per mesh, K and metric."""
  return make_knn(mesh, k, metric)


def search(knn: Callable, bank: jax.Array, queries, candidates: Candidates, exclude=None,
           allowed=None) -> Neighbours:
  """Calls `knn` (from `make_knn`) with host arrays padded and placed on the bank's mesh.

  `bank`: `[N_padded, d]` split along its mesh's first named axis; `queries`: `[B, d]`;
  `candidates`: `[N]` bool masks; `exclude`: `[B]` int or None; `allowed`: `[B, N]` or None.
  """
  mesh, axis = bank.sharding.mesh, bank.sharding.spec[0]
  n = bank.shape[0]
  queries = np.asarray(queries)
  source, target = candidates
  if queries.ndim != 2 or queries.shape[1] != bank.shape[1]:
    raise ValueError(f"queries must be [B, {bank.shape[1]}] for a bank {bank.shape}, got "
                     f"{queries.shape}")
  if np.shape(source) != np.shape(target) or not n - mesh.shape[axis] < len(source) <= n:
    raise ValueError(f"source and target must be [N] masks with N <= {n} (the bank's rows "
                     f"before padding), got {np.shape(source)}, {np.shape(target)}")
  b = queries.shape[0]
  pad = lambda m: np.pad(np.asarray(m, bool), [(0, n - np.shape(m)[-1])] if np.ndim(m) == 1
                         else [(0, 0), (0, n - np.shape(m)[-1])])
  exclude = np.full((b,), -1, np.int32) if exclude is None else np.asarray(exclude, np.int32)
  allowed = np.ones((b, n), bool) if allowed is None else pad(allowed)
  return knn(bank, replicated(queries, mesh),
             jax.device_put(pad(source), NamedSharding(mesh, P(axis))),
             jax.device_put(pad(target), NamedSharding(mesh, P(axis))),
             replicated(exclude, mesh),
             jax.device_put(allowed, NamedSharding(mesh, P(None, axis))))


def nearest(bank, queries, candidates: Candidates, k: int, *, metric: str = "l2",
            exclude=None, allowed=None) -> Neighbours:
  """The K nearest source and target candidates of each query, host arrays in and out.

  Args:
    bank: `[N, d]` float search features (`l2`) or bool attributes (`hamming`).
    queries: `[B, d]`, the same kind.
    candidates: `[N]` bool source and target masks (`candidate_masks`).
    k: neighbours per set.
    metric: "l2" (squared Euclidean) or "hamming".
    exclude: `[B]` int bank index of each query itself, or -1 (none).
    allowed: optional `[B, N]` bool per-query restriction (e.g. same gender).

  Returns `Neighbours` of `[B, k]` int32 NumPy arrays, searched on every device.
  """
  mesh = make_mesh()
  rows = np.asarray(bank, bool if metric == "hamming" else np.float32)
  found = search(knn_for(mesh, k, metric), shard_rows(rows, mesh), np.asarray(queries, rows.dtype),
                 candidates, exclude, allowed)
  return Neighbours(*(np.asarray(n) for n in found))


# ---------------------------------------------------------------------------------------
# On the host: a bank read batch by batch, and ranked lists of candidates.


def streamed(queries: np.ndarray, batches: Iterable[np.ndarray], k: int) -> np.ndarray:
  """`[B, k]` int32: the bank rows nearest each `[B, D]` query (squared L2; ties by index),
  a running top-k over `batches`, the bank's `[n, D]` features in row order."""
  q = np.asarray(queries, np.float32)
  q_sq = np.sum(q * q, axis=1, keepdims=True)
  best_d = np.full((len(q), 0), np.inf, np.float32)
  best_i = np.zeros((len(q), 0), np.int64)
  start = 0
  for f in batches:
    d = np.sum(f * f, axis=1)[None] - 2.0 * q @ f.T + q_sq
    cand_d = np.concatenate([best_d, d.astype(np.float32)], axis=1)
    cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(f)),
                                                     d.shape)], axis=1)
    order = np.lexsort((cand_i, cand_d), axis=1)[:, :k]
    best_d = np.take_along_axis(cand_d, order, 1)
    best_i = np.take_along_axis(cand_i, order, 1)
    start += len(f)
  return best_i.astype(np.int32)


def first_k(distance: np.ndarray, k: int, ties=None) -> np.ndarray:
  """Positions of the `k` smallest of `[n]` `distance`, nearest first; ties by `ties` (`[n]`,
  default the position)."""
  ties = np.arange(len(distance)) if ties is None else np.asarray(ties)
  return np.lexsort((ties, np.asarray(distance)))[:k]


def hamming_order(attributes: np.ndarray, query: np.ndarray, candidates: np.ndarray,
                  columns: np.ndarray) -> np.ndarray:
  """Candidate rows by Hamming distance to `query` over `columns`, nearest first, ties by row.

  `attributes`: `[N, A]` bool; `query`: `[A]`; `candidates`: `[N]` bool; `columns`: `[A]` bool.
  """
  rows = np.flatnonzero(candidates)
  distance = np.sum(attributes[rows][:, columns] != query[columns], axis=1)
  return rows[first_k(distance, len(rows))]
