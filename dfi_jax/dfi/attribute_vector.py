"""w, the attribute vector (mean φ(targets) − mean φ(sources), scaled); targets φ(x) + δ·w.

`difference` is the one formula for w. Every place that computes w gathers its φ rows its own
way and calls it: `from_bank` here (a bank in memory; the probes), the bank streamed from disk
(`bank.attribute_vector`), the bank split over devices (`sharding.make_attribute_vector`, what
runs use), neighbours warped onto each face (`align.neighbour_vectors`), inpainting's masked
neighbours and high-resolution's warped candidates (`runs/inpaint`, `runs/highres`). Being
linear, it also gives each bank row's weight in w from how often the row is a target or a
source (`selection_weights`). `scale_vector` is the one scaling.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dfi_jax.dfi.neighbours import Neighbours

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
