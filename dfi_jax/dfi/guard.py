"""A reverse map never returns a diverged iterate.

L-BFGS with full steps (no line search, the default) is not monotone; rarely a step overshoots
and the solve runs away (a saturated colour blob, a loss several times its best). Every solver's
`(init, step)` pair is wrapped to keep, per image, the lowest-loss iterate seen (`wrap`); at the
end an image whose final loss is more than `DIVERGED` times that lowest loss returns the best
iterate instead (`pick`). A healthy solve ends near its best, so its result is unchanged.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

DIVERGED = 2.0  # final loss / lowest loss above which a solve counts as diverged


def wrap(init: Callable, step: Callable) -> tuple[Callable, Callable]:
  """A solver's `init(z, target, variables) -> state` and `step(z, state, target, variables) ->
  (z, state, value, evaluations)` with `(state, best z, best value)` as the state."""

  def guarded_init(z, target, variables):
    return init(z, target, variables), z, jnp.asarray(jnp.inf, jnp.float32)

  def guarded_step(z, state, target, variables):
    inner, best_z, best_value = state
    z, inner, value, evals = step(z, inner, target, variables)
    better = jnp.isfinite(value) & (value < best_value)
    best_z = jax.tree.map(lambda a, b: jnp.where(better, a, b), z, best_z)
    return z, (inner, best_z, jnp.where(better, value, best_value)), value, evals

  return guarded_init, guarded_step


def pick(z, value: np.ndarray, state) -> tuple[object, np.ndarray]:
  """`(z, [B] losses)` with each diverged image's (final loss > `DIVERGED` × its lowest) best
  iterate and loss in place of its last; `state`: the wrapped solver's batched state."""
  _, best_z, best_value = state
  best_value = np.asarray(best_value)
  if best_value.ndim == 0:  # joint: one problem over the batch, no per-image choice
    return z, value
  diverged = np.isfinite(best_value) & (np.asarray(value) > DIVERGED * best_value)
  if not diverged.any():
    return z, value
  choose = lambda a, b: jnp.where(jnp.asarray(diverged).reshape((-1,) + (1,) * (a.ndim - 1)),
                                  b, a)
  return jax.tree.map(choose, z, best_z), np.where(diverged, best_value, value)
