"""The one SciPy reference solver of the research harnesses: L-BFGS-B on pixels in [0, 1]."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np
import scipy.optimize


def lbfgsb(value_and_grad: Callable, z0: np.ndarray, iterations: int, history: int = 10,
           **options) -> tuple[np.ndarray, scipy.optimize.OptimizeResult]:
  """SciPy's L-BFGS-B from `z0` within the box [0, 1], in float64.

  Args:
    value_and_grad: `z [shape of z0] float32 -> (loss, gradient [shape of z0])` (a jitted
      `jax.value_and_grad` of the objective).
    z0: the start, any shape, in [0, 1].
    iterations: `maxiter`; `history` is `maxcor`; `options` adds SciPy options (`ftol`, …).

  Returns:
    `(z, result)`: `z` float32 in the shape of `z0`, clipped to [0, 1], and SciPy's result
    (`fun`, `nfev`, …).
  """
  shape = z0.shape

  def fun(v):
    val, g = value_and_grad(jnp.asarray(v.reshape(shape), jnp.float32))
    return float(val), np.asarray(g, np.float64).ravel()

  res = scipy.optimize.minimize(fun, np.asarray(z0, np.float64).ravel(), jac=True,
                                method="L-BFGS-B", bounds=scipy.optimize.Bounds(0.0, 1.0),
                                options=dict(maxiter=iterations, maxcor=history, **options))
  return np.clip(res.x.reshape(shape), 0, 1).astype(np.float32), res
