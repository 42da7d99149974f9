"""w, the attribute vector (mean φ(targets) − mean φ(sources), scaled); targets φ(x) + δ·w.

`difference` is the one formula for w, and this module the one home of w. Every place that
computes w gathers its φ rows its own way and calls it: `from_bank` here (a bank in memory; the
probes), `on_mesh` / `from_rows` here (the bank split over devices: what edit runs use), the
bank streamed from disk (`bank.attribute_vector`), and, weighted by `row_weights` /
`mean_weights` here, neighbours warped onto each face (`align.neighbour_vectors`) and
inpainting's masked neighbours (`runs/inpaint`); high resolution's warped candidates take the
difference of their means (`runs/highres`). Being linear, it also gives each bank row's weight
in w from how often the row is a target or a source (`selection_weights`, `row_weights`).
`scale_vector` is the one scaling.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from dfi_jax.dfi.neighbours import Neighbours
from dfi_jax.dfi.sharding.mesh import DATA, replicated

SCALINGS = ("mean_square", "none", "unit")


def difference(source, target, k: int = 1):
  """w = (target − source) / k: the one formula for the attribute vector.

  `source`, `target`: `[..., D]` φ of the images without and with the attribute (NumPy or JAX,
  any float dtype, kept), either their means (k = 1; dividing by 1 is exact) or their sums over
  K neighbours each (k = K). Also maps per-row target/source counts to selection weights.
  """
  return (target - source) / k


def selection_weights(neighbours: Neighbours, bank_size: int) -> jax.Array:
  """`[B, N]` weights: +1/K on each target, -1/K on each source neighbour.

  `weights @ bank` is mean φ(target) − mean φ(source) without gathering `[B, K, D]`.
  """
  k = neighbours.target.shape[-1]

  def one(src, tgt):
    def count(rows):
      return jnp.zeros((bank_size,), jnp.float32).at[rows].add(1.0)
    return difference(count(src), count(tgt), k)

  return jax.vmap(one)(neighbours.source, neighbours.target)


def from_bank(bank: jax.Array, neighbours: Neighbours) -> jax.Array:
  """w = mean bank[target] − mean bank[source]: `[N, D]` bank -> `[B, D]`."""
  return selection_weights(neighbours, bank.shape[0]) @ jnp.asarray(bank, jnp.float32)


def mean_weights(rows: np.ndarray, used: np.ndarray) -> np.ndarray:
  """`[B, K]` bank rows -> `[B, U]` float64: each of the sorted `[U]` `used` rows' weight in the
  mean of a query's K rows (1/K for each time it is among them)."""
  rows = np.asarray(rows)
  weights = np.zeros((len(rows), len(used)), np.float64)
  for q in range(len(rows)):
    np.add.at(weights[q], np.searchsorted(used, rows[q]), difference(0.0, 1.0, rows.shape[1]))
  return weights


def row_weights(neighbours: Neighbours, used: np.ndarray) -> np.ndarray:
  """`[B, U]` float64 weights of the sorted `[U]` `used` rows in w (+1/K on each target, −1/K
  on each source neighbour): the NumPy `selection_weights` over just the rows used."""
  return difference(mean_weights(neighbours.source, used),
                    mean_weights(neighbours.target, used))


def on_mesh(mesh: Mesh, axis: str = DATA):
  """Jitted `w(bank [N, D] split along axis, neighbours) -> [B, D]` float32 replicated:
  `difference` of the K-row sums, each device adding the rows it holds (one K-step loop of
  `[B, D]` gathers), then one psum: the bank is never gathered. Memory per device: `[B, D]`,
  whatever K."""

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

    w = difference(total(source), total(target), target.shape[1])
    return jax.lax.psum(w, axis)

  sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(axis, None), P(), P()),
                          out_specs=P(), check_vma=False)
  return jax.jit(lambda bank, nb: sharded(bank, nb.source, nb.target))


@functools.lru_cache(maxsize=16)
def _on_mesh(mesh: Mesh):
  return on_mesh(mesh)


def from_rows(phi: jax.Array, used: np.ndarray, neighbours: Neighbours) -> np.ndarray:
  """Unscaled w, `[B, D]` float32, of `Neighbours` (`[B, K]` bank indices) whose φ lies on a
  mesh: `phi` `[U_padded, D]` holds φ of the sorted bank rows `used` (`[U]`), split along the
  mesh's `data` axis (`on_mesh`)."""
  mesh = phi.sharding.mesh
  local = Neighbours(*(np.searchsorted(used, n).astype(np.int32) for n in neighbours))
  return np.asarray(_on_mesh(mesh)(phi, Neighbours(*(replicated(n, mesh) for n in local))))


def scale_vector(w: jax.Array, mode: str) -> jax.Array:
  """Scales `[B, D]` attribute vectors.

  `mean_square`: w / mean(w²) (the official code's "beta" scaling); `unit`: w / ‖w‖;
  `none`: unchanged.
  """
  if mode == "none":
    return w
  if mode == "mean_square":
    return w / jnp.maximum(jnp.mean(w * w, axis=-1, keepdims=True), 1e-30)
  if mode == "unit":
    return w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), 1e-30)
  raise ValueError(f"scaling must be one of {SCALINGS}, got {mode!r}")


def edit_targets(phi_x: jax.Array, w: jax.Array, deltas: Sequence[float]) -> jax.Array:
  """`[B, D]` φ(x) and scaled w -> `[S, B, D]` targets φ(x) + δ_s·w for each δ of the sweep."""
  d = jnp.asarray(deltas, jnp.float32)[:, None, None]
  return phi_x[None] + d * w[None]


def project_out(w: np.ndarray, others: np.ndarray) -> np.ndarray:
  """`[B, D]` w minus its least-squares projection onto the span of `[O, B, D]` `others` (per
  row b: w_b − A_bᵀ c_b, A_b = others[:, b], c_b = argmin ‖w_b − A_bᵀ c‖), float32: the result
  is orthogonal to every other row it was projected against. O = 0 returns w unchanged."""
  w = np.asarray(w, np.float64)
  others = np.asarray(others, np.float64).reshape(-1, *w.shape)
  if not len(others):
    return w.astype(np.float32)
  out = np.empty_like(w)
  for b in range(len(w)):
    a = others[:, b]  # [O, D]
    c = np.linalg.lstsq(a.T, w[b], rcond=None)[0]
    out[b] = w[b] - a.T @ c
  return out.astype(np.float32)
