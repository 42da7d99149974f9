"""The reverse map: pixels z whose features match an edit target.

For one image, with target t = φ(x) + δ·w split into layers t_l,

  loss(z) = (1/L) Σ_l ½‖φ_l(z) − t_l‖²  +  λ · TV^β(z)
  TV^β(z) = Σ_{c, i<H-1, j<W-1} max(dx² + dy², ε)^(β/2),   dx, dy forward differences

with z in [0, 1] pixels but TV measured in 0–255 units (ε = 1e-3 there), exactly as the official
code, so the paper's λ = 0.001, β = 2 mean what they meant. (In [0, 1] units the same penalty
has λ·255^β, i.e. 65 for λ = 0.001, β = 2.) The feature term is in the weights' own units, so
λ and δ are weight-specific.

Solved per image with box-constrained L-BFGS-B (jaxopt, default) or optax.lbfgs followed by a
projection onto [0, 1], vmapped over a batch and run in compiled chunks of iterations so a
progress bar can advance between them. Non-finite losses are detected per image.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dfi_jax import features as features_lib
from dfi_jax import model as model_lib

with warnings.catch_warnings():
  # jaxopt announces on import that it is unmaintained; we use it as asked and keep optax too.
  warnings.filterwarnings("ignore", category=DeprecationWarning, module="jaxopt")
  warnings.filterwarnings("ignore", message=".*JAXopt is no longer maintained.*")
  import jaxopt

SOLVERS = ("jaxopt_lbfgsb", "optax_lbfgs")


@dataclasses.dataclass(frozen=True)
class ReverseMapConfig:
  """Settings of the reverse map (hashable: one compiled solver per distinct config)."""
  tv_weight: float = 0.001  # λ, for TV in 0-255 pixel units
  tv_beta: float = 2.0  # β
  tv_epsilon: float = 1e-3
  solver: str = "jaxopt_lbfgsb"
  history: int = 10  # L-BFGS memory (SciPy's maxcor)
  linesearch: str = "zoom"  # jaxopt: zoom | backtracking | hager-zhang
  linesearch_init: str = "increase"  # jaxopt: increase | max | current
  maxls: int = 20
  chunk: int = 25  # iterations per compiled call (progress granularity)

  def validate(self) -> None:
    if self.solver not in SOLVERS:
      raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
    if not self.tv_weight >= 0:
      raise ValueError(f"tv_weight (λ) must be >= 0, got {self.tv_weight}")
    if not self.tv_beta > 0:
      raise ValueError(f"tv_beta (β) must be > 0, got {self.tv_beta}")
    if self.chunk <= 0 or self.history <= 0:
      raise ValueError("chunk and history must be positive")


def total_variation(z: jax.Array, beta: float, epsilon: float = 1e-3,
                    scale: float = 255.0) -> jax.Array:
  """TV^β of one image `z`: `[H, W, C]` in [0, 1] -> scalar (differences in `scale` units)."""
  d = z * scale
  dx = d[:-1, 1:] - d[:-1, :-1]
  dy = d[1:, :-1] - d[:-1, :-1]
  return jnp.sum(jnp.maximum(dx * dx + dy * dy, epsilon) ** (beta / 2.0))


def feature_loss(phi_z: jax.Array, target: jax.Array, spec: features_lib.FeatureSpec
                 ) -> jax.Array:
  """Mean over layers of ½‖φ_l(z) − t_l‖²; `phi_z`, `target`: `[D]`."""
  parts = features_lib.split(phi_z - target, spec)
  return sum(0.5 * jnp.sum(v * v) for v in parts.values()) / len(parts)


def make_objective(net, spec: features_lib.FeatureSpec, config: ReverseMapConfig
                   ) -> Callable:
  """`objective(z [H, W, 3], target [D], variables) -> scalar` for one image."""

  def objective(z, target, variables):
    taps = net.apply(variables, z[None])
    phi_z = features_lib.flatten(taps, net.taps)[0]
    tv = total_variation(z, config.tv_beta, config.tv_epsilon)
    return feature_loss(phi_z, target, spec) + config.tv_weight * tv

  return objective


class ReverseMapResult(NamedTuple):
  images: np.ndarray  # [B, H, W, 3] float32 in [0, 1]
  loss: np.ndarray  # [B] final objective
  finite: np.ndarray  # [B] bool: False where the loss became NaN/inf
  evaluations: np.ndarray  # [B] objective (value+grad) evaluations
  iterations: int


class ReverseMap:
  """A compiled reverse map for one network, feature layout and config.

  Keep one instance per setting: batches of the same shape reuse the compiled code.
  """

  def __init__(self, net, spec: features_lib.FeatureSpec, config: ReverseMapConfig):
    config.validate()
    self.net, self.spec, self.config = net, spec, config
    self.objective = make_objective(net, spec, config)
    if config.solver == "jaxopt_lbfgsb":
      self._init, self._step = self._jaxopt_fns()
    else:
      self._init, self._step = self._optax_fns()
    self._init = jax.jit(jax.vmap(self._init, in_axes=(0, 0, None)))
    self._chunk = jax.jit(self._make_chunk(), static_argnums=(3,))

  def _jaxopt_fns(self):
    c = self.config
    solver = jaxopt.LBFGSB(fun=self.objective, value_and_grad=False, maxiter=1 << 30,
                           tol=0.0, history_size=c.history, linesearch=c.linesearch,
                           linesearch_init=c.linesearch_init, maxls=c.maxls)
    bounds = (0.0, 1.0)

    def init(z, target, variables):
      lower = jnp.zeros_like(z)
      return solver.init_state(z, (lower, lower + 1.0), target, variables)

    def step(z, state, target, variables):
      lower = jnp.zeros_like(z)
      z, state = solver.update(z, state, (lower, lower + bounds[1]), target, variables)
      return z, state, state.value, state.num_fun_eval

    return init, step

  def _optax_fns(self):
    c = self.config
    opt = optax.lbfgs(memory_size=c.history)

    def init(z, target, variables):
      del target, variables
      return (opt.init(z), jnp.asarray(0, jnp.int32))

    def step(z, state, target, variables):
      opt_state, evals = state
      fn = lambda u: self.objective(u, target, variables)
      value, grad = optax.value_and_grad_from_state(fn)(z, state=opt_state)
      updates, opt_state = opt.update(grad, opt_state, z, value=value, grad=grad, value_fn=fn)
      z = jnp.clip(optax.apply_updates(z, updates), 0.0, 1.0)
      evals = evals + 1 + optax.tree.get(opt_state, "num_linesearch_steps")
      return z, (opt_state, evals), value, evals

    return init, step

  def _make_chunk(self):
    def run(z, state, targets, n, variables):
      def one(z, state, target):
        def body(_, carry):
          z, state, value, evals, finite = carry
          z_new, state_new, value_new, evals_new = self._step(z, state, target, variables)
          ok = jnp.isfinite(value_new) & jnp.all(jnp.isfinite(z_new))
          # Once non-finite, an image stops moving; the caller reports it.
          keep = finite & ok
          z = jnp.where(keep, z_new, z)
          state = jax.tree.map(lambda a, b: jnp.where(keep, a, b), state_new, state)
          return z, state, jnp.where(keep, value_new, value), evals_new, keep
        init = (z, state, jnp.asarray(jnp.inf, jnp.float32), jnp.asarray(0, jnp.int32),
                jnp.asarray(True))
        return jax.lax.fori_loop(0, n, body, init)
      z, state, value, evals, finite = jax.vmap(one)(z, state, targets)
      return z, state, value, evals, finite
    return lambda z, state, targets, n, variables: run(z, state, targets, n, variables)

  def __call__(self, params, targets: jax.Array, z0: jax.Array, iterations: int,
               progress: Callable[[int], None] | None = None,
               state=None) -> ReverseMapResult:
    """Runs `iterations` L-BFGS iterations from `z0`.

    Args:
      params: VGG params pytree.
      targets: `[B, D]` float32 edit targets.
      z0: `[B, H, W, 3]` float32 in [0, 1] start (the input, or a previous δ's result).
      iterations: > 0.
      progress: called with the number of iterations done after each chunk.
    """
    if iterations <= 0:
      raise ValueError(f"iterations must be positive, got {iterations}")
    z = jnp.clip(jnp.asarray(z0, jnp.float32), 0.0, 1.0)
    targets = jnp.asarray(targets, jnp.float32)
    if targets.shape != (z.shape[0], self.spec.dim):
      raise ValueError(f"targets must be [B, {self.spec.dim}] for z0 {z.shape}, "
                       f"got {targets.shape}")
    # Flipped kernels computed here, outside the solver loop (see model.py).
    variables = {"params": params, "backward": model_lib.backward_kernels(params)}
    state = self._init(z, targets, variables)
    finite = np.ones(z.shape[0], bool)
    evals_total = np.zeros(z.shape[0], np.int64)
    value = np.full(z.shape[0], np.nan, np.float32)
    done = 0
    while done < iterations:
      n = min(self.config.chunk, iterations - done)
      z, state, v, evals, ok = self._chunk(z, state, targets, n, variables)
      ok = np.asarray(ok)
      finite &= ok
      value = np.where(ok, np.asarray(v), value)
      evals_total = np.asarray(evals, np.int64)  # both solvers count cumulatively
      done += n
      if progress is not None:
        progress(n)
      if not finite.any():
        break
    images = np.asarray(jnp.clip(z, 0.0, 1.0))
    return ReverseMapResult(images, value, finite, evals_total, done)
