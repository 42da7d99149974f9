"""The reference neighbour rules for tests: each query ranked on its own, in one device's memory.

`dfi_jax.dfi.neighbours` searches on a mesh (a per-device top-k, then a global one); these are
the plain versions it is held against, index for index: candidates that are not allowed or are
the query itself sort last, ties go to the lowest bank index (`top_k` keeps the lower index
first among equal keys). tests/dfi/test_neighbours.py holds these against brute force.
"""

import jax
import jax.numpy as jnp

from dfi_jax.dfi.neighbours import Neighbours


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
