"""Choosing the source and target neighbours of a test image.

Two rules, both over arrays with a leading bank axis `N` (so a sharded bank drops in):

* attribute space (the official demo1): for the edit "add attribute a", the source set is the
  bank images *without* a, the target set those *with* a; each is ranked by Hamming distance
  over all binary attributes to the test image's attributes, the test image itself excluded,
  and the first K kept. Ties are broken by bank index, lowest first.
* feature space (the paper's text, and any image without known attributes): the same candidate
  sets ranked by squared Euclidean distance in a search space (φ or a reduction of it).

Both are vmapped over a batch of queries `B`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class Neighbours(NamedTuple):
  """Bank indices: `source` and `target`, each `[B, K]` int32, nearest first."""
  source: jax.Array
  target: jax.Array


def attribute_index(names: Sequence[str], valid: Sequence[str]) -> list[int]:
  """Indices of `names` in `valid`; an unknown name is a ValueError listing the valid ones."""
  unknown = [n for n in names if n not in valid]
  if unknown:
    raise ValueError(f"unknown attribute(s) {unknown}; valid attributes are {list(valid)}")
  return [list(valid).index(n) for n in names]


def check_candidates(bank_attributes: np.ndarray, column: int, k: int, name: str) -> None:
  """Raises if either candidate set for attribute `column` has fewer than `k` images."""
  if k <= 0:
    raise ValueError(f"K must be positive, got {k}")
  has = int(np.sum(bank_attributes[:, column]))
  lacks = len(bank_attributes) - has
  if min(has, lacks) < k:
    raise ValueError(f"K={k} but the bank has only {has} images with {name!r} and {lacks} "
                     f"without it; lower K or enlarge the bank")


def _first_k(distance: jax.Array, candidate: jax.Array, k: int) -> jax.Array:
  # Non-candidates sort last; top_k keeps the lower index first among equal keys.
  key = jnp.where(candidate, distance, jnp.inf)
  return jax.lax.top_k(-key, k)[1].astype(jnp.int32)


def attribute_neighbours(bank_attributes: jax.Array, query_attributes: jax.Array,
                         column: int, k: int, exclude: jax.Array | None = None) -> Neighbours:
  """Official Hamming-ranked neighbours for adding attribute `column`.

  Args:
    bank_attributes: `[N, A]` bool.
    query_attributes: `[B, A]` bool.
    column: which attribute the edit adds.
    k: neighbours per set.
    exclude: `[B]` int32 bank index of each query itself, or -1 (none).
  """
  bank = jnp.asarray(bank_attributes, bool)
  queries = jnp.asarray(query_attributes, bool)
  if exclude is None:
    exclude = jnp.full((queries.shape[0],), -1, jnp.int32)
  index = jnp.arange(bank.shape[0])

  def one(q, ex):
    distance = jnp.sum(bank != q, axis=-1).astype(jnp.float32)
    allowed = index != ex
    return (_first_k(distance, allowed & ~bank[:, column], k),
            _first_k(distance, allowed & bank[:, column], k))

  source, target = jax.vmap(one)(queries, jnp.asarray(exclude, jnp.int32))
  return Neighbours(source, target)


def feature_neighbours(bank_features: jax.Array, bank_has: jax.Array, queries: jax.Array,
                       k: int) -> Neighbours:
  """K nearest bank images lacking / having the attribute, by squared L2 in feature space.

  Args:
    bank_features: `[N, D]` float search features.
    bank_has: `[N]` bool, whether each bank image has the attribute.
    queries: `[B, D]` float.
    k: neighbours per set.
  """
  bank = jnp.asarray(bank_features, jnp.float32)
  has = jnp.asarray(bank_has, bool)
  bank_sq = jnp.sum(bank * bank, axis=-1)

  def one(q):
    distance = bank_sq - 2.0 * bank @ q + jnp.sum(q * q)
    return _first_k(distance, ~has, k), _first_k(distance, has, k)

  source, target = jax.vmap(one)(jnp.asarray(queries, jnp.float32))
  return Neighbours(source, target)
