"""The attribute vector w and the edit targets φ(x) + δ·w."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from dfi_jax.dfi.neighbours import Neighbours

SCALINGS = ("mean_square", "none", "unit")


def selection_weights(neighbours: Neighbours, bank_size: int) -> jax.Array:
  """`[B, N]` weights: +1/K on each target, -1/K on each source neighbour.

  `weights @ bank` is mean φ(target) − mean φ(source) without gathering `[B, K, D]`.
  """
  k = neighbours.target.shape[-1]

  def one(src, tgt):
    w = jnp.zeros((bank_size,), jnp.float32)
    return w.at[tgt].add(1.0 / k).at[src].add(-1.0 / k)

  return jax.vmap(one)(neighbours.source, neighbours.target)


def attribute_vector(bank: jax.Array, neighbours: Neighbours) -> jax.Array:
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

