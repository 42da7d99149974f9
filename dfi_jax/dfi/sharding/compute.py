"""On the mesh: exact KNN (per-device top-k, one all-gather), neighbour means where the rows
live (one `psum`), and data-parallel reverse maps."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dfi_jax.dfi import attribute_vector as vector_lib
from dfi_jax.dfi import reconstruct
from dfi_jax.dfi.neighbours import Neighbours
from dfi_jax.dfi.sharding.mesh import DATA, padded_size, replicated


METRICS = ("l2", "hamming")


# ---------------------------------------------------------------------------------------
# KNN.


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


def make_knn(mesh: Mesh, k: int, metric: str = "l2", axis: str = DATA) -> Callable:
  """A jitted sharded KNN; keep it: batches of the same shape reuse its compiled code.

  Returns `knn(bank, queries, source, target, exclude, allowed) -> Neighbours` with
    bank: `[N, d]` (float search features for `l2`, bool attributes for `hamming`), split
      along `axis` (see `shard_rows` / `bank_to_mesh`; N a multiple of the axis size);
    queries: `[B, d]`; source, target: `[N]` bool candidate masks (False on padding rows);
    exclude: `[B]` int32 bank index of each query itself, or -1;
    allowed: `[B, N]` bool per-query restriction (all True for none).
  Equal to `neighbours.feature_neighbours` (`l2`) / `attribute_neighbours` (`hamming`).
  """
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
  if k <= 0:
    raise ValueError(f"k must be positive, got {k}")

  def local(bank, queries, source, target, exclude, allowed):
    n = bank.shape[0]
    index = jax.lax.axis_index(axis) * n + jnp.arange(n)
    if metric == "l2":
      # The same expression as neighbours.feature_neighbours, so distances agree bit for bit.
      bank = bank.astype(jnp.float32)
      bank_sq = jnp.sum(bank * bank, axis=-1)
      distance = jax.vmap(lambda q: bank_sq - 2.0 * bank @ q + jnp.sum(q * q))(
          queries.astype(jnp.float32))
    else:
      distance = jax.vmap(lambda q: jnp.sum(bank != q, axis=-1).astype(jnp.float32))(queries)
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


def neighbours(knn: Callable, mesh: Mesh, bank: jax.Array, queries, source, target,
               exclude=None, allowed=None, axis: str = DATA) -> Neighbours:
  """Calls `knn` (from `make_knn`) with host arrays padded and placed for the mesh.

  `source`, `target`: `[N]` bool; `exclude`: `[B]` or None; `allowed`: `[B, N]` or None.
  """
  n = bank.shape[0]
  queries = np.asarray(queries)
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


# ---------------------------------------------------------------------------------------
# Neighbour means where the rows live.


def make_attribute_vector(mesh: Mesh, axis: str = DATA) -> Callable:
  """Jitted `w(bank [N, D] split along axis, neighbours) -> [B, D]` float32 replicated:
  `attribute_vector.difference` of the K-row sums, each device adding the rows it holds (one
  K-step loop of `[B, D]` gathers), then one psum. Memory per device: `[B, D]`, whatever K."""

  def local(bank, source, target):
    n = bank.shape[0]
    offset = jax.lax.axis_index(axis) * n

    def total(idx):
      def body(j, acc):
        i = idx[:, j] - offset
        mine = (i >= 0) & (i < n)
        rows = bank[jnp.clip(i, 0, n - 1)].astype(jnp.float32)
        return acc + jnp.where(mine[:, None], rows, 0.0)
      return jax.lax.fori_loop(0, idx.shape[1], body,
                               jnp.zeros((idx.shape[0], bank.shape[1]), jnp.float32))

    w = vector_lib.difference(total(source), total(target), target.shape[1])
    return jax.lax.psum(w, axis)

  sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(axis, None), P(), P()),
                          out_specs=P(), check_vma=False)
  return jax.jit(lambda bank, nb: sharded(bank, nb.source, nb.target))


# ---------------------------------------------------------------------------------------
# Reverse maps, data-parallel.


def reverse_maps(reverse_map: reconstruct.ReverseMap, mesh: Mesh, params, targets, z0,
                 iterations: int, progress: Callable[[int], None] | None = None,
                 axis: str = DATA) -> reconstruct.ReverseMapResult:
  """`reverse_map` on a batch split over `axis`: `targets` `[B, D]`, `z0` `[B, H, W, 3]`.

  B is padded (repeating the last image) to a multiple of the axis size; params are
  replicated. Same shapes, same compiled code: keep `reverse_map` and the batch size fixed.
  `mesh` holds this host's devices only (`local_mesh`): `ReverseMap.__call__` reads its results
  back with `np.asarray`, so on many hosts each maps its own items (`share`, `gather_items`).
  """
  targets, z0 = np.asarray(targets, np.float32), np.asarray(z0, np.float32)
  b = len(z0)
  pad = padded_size(b, mesh, axis) - b
  if pad:
    targets = np.concatenate([targets, np.repeat(targets[-1:], pad, 0)])
    z0 = np.concatenate([z0, np.repeat(z0[-1:], pad, 0)])
  split = lambda x: jax.device_put(x, NamedSharding(mesh, P(axis, *([None] * (x.ndim - 1)))))
  params = jax.device_put(params, NamedSharding(mesh, P()))
  result = reverse_map(params, split(targets), split(z0), iterations, progress)
  return result._replace(images=result.images[:b], loss=result.loss[:b],
                         finite=result.finite[:b], evaluations=result.evaluations[:b])
