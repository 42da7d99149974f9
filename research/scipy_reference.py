"""The one SciPy reference solver of the research harnesses: L-BFGS-B on pixels in [0, 1]."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from dfi_jax.dfi import reconstruct
from dfi_jax.nets import model as model_lib


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


def joint_solve(net, spec, config, params) -> Callable:
  """A `pipeline.Solve` for `net`'s reverse map with `config`'s λ, β: `lbfgsb` on the sum of
  the batch's objectives (`reconstruct.make_objective`), as the official code solves one image.

  `(targets [b, D], z0 [b, S, S, 3], iterations, progress=None) -> ReverseMapResult`; the loss
  of every item is the batch's joint loss (SciPy sees only the sum).
  """
  objective = reconstruct.make_objective(net, spec, config)
  variables = {"params": params, "backward": model_lib.backward_kernels(params)}
  joint = jax.jit(jax.value_and_grad(
      lambda z, t: jnp.sum(jax.vmap(objective, in_axes=(0, 0, None))(z, t, variables))))

  def solve(targets, z0, iterations, progress=None):
    z, res = lbfgsb(lambda v: joint(v, targets), z0, iterations)
    if progress is not None:
      progress(iterations)
    n = len(z)
    return reconstruct.ReverseMapResult(
        z, np.full(n, res.fun, np.float32), np.full(n, np.isfinite(res.fun)),
        np.full(n, res.nfev, np.int64), int(res.nit))

  return solve
