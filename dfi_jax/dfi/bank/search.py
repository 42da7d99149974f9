"""Search reduction: a smaller view of φ used only to rank neighbours (pooled or projected)."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dfi_jax.dfi import features as features_lib


SEARCH_KINDS = ("none", "pool", "projection")
_PROJECTION_BLOCK = 2048  # rows of the random projection made at a time


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
