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

from dfi_jax.data.sources import Edit


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


def candidate_masks(bank_attributes: np.ndarray, edit: Edit, names: Sequence[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
  """`[N]` bool source and target candidate masks of `edit` over the bank."""
  (b,) = attribute_index([edit.target_attribute], names)
  has_b = np.asarray(bank_attributes[:, b], bool)
  if edit.source_attribute is None:
    return ~has_b, has_b
  (a,) = attribute_index([edit.source_attribute], names)
  has_a = np.asarray(bank_attributes[:, a], bool)
  return has_a & ~has_b, has_b & ~has_a


def check_candidates(source: np.ndarray, target: np.ndarray, k: int, name: str) -> None:
  """Raises if either candidate set of edit `name` has fewer than `k` images."""
  if k <= 0:
    raise ValueError(f"K must be positive, got {k}")
  n_src, n_tgt = int(np.sum(source)), int(np.sum(target))
  if min(n_src, n_tgt) < k:
    raise ValueError(f"K={k} but edit {name!r} has only {n_src} source and {n_tgt} target "
                     f"candidates in the bank; lower K or enlarge the bank")


def edit_masks(bank_attributes: np.ndarray, edits: Sequence[Edit], names: Sequence[str],
               k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Edit name -> its `[N]` source and target candidate masks, each checked to hold `k`."""
  masks = {}
  for e in edits:
    masks[e.name] = candidate_masks(bank_attributes, e, names)
    check_candidates(*masks[e.name], k, e.name)
  return masks


def _first_k(distance: jax.Array, candidate: jax.Array, k: int) -> jax.Array:
  # Non-candidates sort last; top_k keeps the lower index first among equal keys.
  key = jnp.where(candidate, distance, jnp.inf)
  return jax.lax.top_k(-key, k)[1].astype(jnp.int32)


def attribute_neighbours(bank_attributes: jax.Array, query_attributes: jax.Array,
                         source: jax.Array, target: jax.Array, k: int,
                         exclude: jax.Array | None = None,
                         allowed: jax.Array | None = None) -> Neighbours:
  """Official neighbours: candidates ranked by Hamming distance of all attributes.

  Args:
    bank_attributes: `[N, A]` bool.
    query_attributes: `[B, A]` bool.
    source, target: `[N]` bool candidate masks (see `candidate_masks`).
    k: neighbours per set.
    exclude: `[B]` int32 bank index of each query itself, or -1 (none).
    allowed: optional `[B, N]` bool per-query restriction (e.g. same gender).
  """
  bank = jnp.asarray(bank_attributes, bool)
  queries = jnp.asarray(query_attributes, bool)
  if exclude is None:
    exclude = jnp.full((queries.shape[0],), -1, jnp.int32)
  if allowed is None:
    allowed = jnp.ones((queries.shape[0], bank.shape[0]), bool)
  index = jnp.arange(bank.shape[0])
  source, target = jnp.asarray(source, bool), jnp.asarray(target, bool)

  def one(q, ex, ok):
    distance = jnp.sum(bank != q, axis=-1).astype(jnp.float32)
    ok = ok & (index != ex)
    return _first_k(distance, ok & source, k), _first_k(distance, ok & target, k)

  src, tgt = jax.vmap(one)(queries, jnp.asarray(exclude, jnp.int32), jnp.asarray(allowed, bool))
  return Neighbours(src, tgt)


def feature_neighbours(bank_features: jax.Array, queries: jax.Array, source: jax.Array,
                       target: jax.Array, k: int, exclude: jax.Array | None = None
                       ) -> Neighbours:
  """K nearest source / target candidates by squared L2 in a search space.

  Args:
    bank_features: `[N, D]` float search features.
    queries: `[B, D]` float.
    source, target: `[N]` bool candidate masks.
    k: neighbours per set.
    exclude: `[B]` int32 bank index of each query itself, or -1 (none).
  """
  bank = jnp.asarray(bank_features, jnp.float32)
  queries = jnp.asarray(queries, jnp.float32)
  source, target = jnp.asarray(source, bool), jnp.asarray(target, bool)
  if exclude is None:
    exclude = jnp.full((queries.shape[0],), -1, jnp.int32)
  bank_sq = jnp.sum(bank * bank, axis=-1)
  index = jnp.arange(bank.shape[0])

  def one(q, ex):
    distance = bank_sq - 2.0 * bank @ q + jnp.sum(q * q)
    ok = index != ex
    return _first_k(distance, ok & source, k), _first_k(distance, ok & target, k)

  src, tgt = jax.vmap(one)(queries, jnp.asarray(exclude, jnp.int32))
  return Neighbours(src, tgt)
