"""The reverse map: pixels z whose features match an edit target.

For one image, with target t = φ(x) + δ·w split into layers t_l,

  loss(z) = (1/L) Σ_l ½‖φ_l(z) − t_l‖²  +  λ · TV^β(z)
  TV^β(z) = Σ_{c, i<H-1, j<W-1} max(dx² + dy², ε)^(β/2),   dx, dy forward differences

with z in [0, 1] pixels but TV measured in 0–255 units (ε = 1e-3 there), exactly as the official
code, so the paper's λ = 0.001, β = 2 mean what they meant. (In [0, 1] units the same penalty
has λ·255^β, i.e. 65 for λ = 0.001, β = 2.) The feature term is in the weights' own units, so
λ and δ are weight-specific.

Solved per image with optax.lbfgs followed by a projection onto [0, 1] (default) or
box-constrained L-BFGS-B (jaxopt), vmapped over a batch and run in compiled chunks of iterations so a
progress bar can advance between them. Non-finite losses are detected per image.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dfi_jax.dfi import coarse_to_fine
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import guard
from dfi_jax.dfi import where as where_lib
from dfi_jax.nets import networks

with warnings.catch_warnings():
  # jaxopt announces on import that it is unmaintained; we use it as asked and keep optax too.
  warnings.filterwarnings("ignore", category=DeprecationWarning, module="jaxopt")
  warnings.filterwarnings("ignore", message=".*JAXopt is no longer maintained.*")
  import jaxopt

LINESEARCHES = ("zoom", "backtracking", "armijo", "hager-zhang", "none")
LINESEARCH_INITS = ("increase", "max", "current")


@dataclasses.dataclass(frozen=True)
class ReverseMapConfig:
  """Settings of the reverse map (hashable: one compiled solver per distinct config)."""
  tv_weight: float = 0.001  # λ, for TV in 0-255 pixel units
  tv_beta: float = 2.0  # β
  tv_epsilon: float = 1e-3
  # optax.lbfgs + projection reaches a given loss in fewer iterations than jaxopt's L-BFGS-B
  # here (~1.03 evaluations per iteration; research/benchmark.py, docs/benchmarks.md).
  solver: str = "optax_lbfgs"
  history: int = 10  # L-BFGS memory (SciPy's maxcor)
  # jaxopt's line search (solver jaxopt_lbfgsb; evaluations per iteration: docs/benchmarks.md).
  # "none": the full step every iteration (one evaluation each, like the torch peer without line
  # search); with jaxopt pair it with scale_first_step. For optax_lbfgs only "none" matters: any
  # other value means optax's zoom line search.
  linesearch: str = "backtracking"  # jaxopt: zoom | backtracking | armijo | hager-zhang | none
  linesearch_init: str = "max"  # jaxopt: increase | max | current
  maxls: int = 20
  c2: float = 0.9  # Wolfe curvature constant (zoom, backtracking)
  # jaxopt: divide the objective by ‖∇f(z0)‖₂ so the first L-BFGS-B step (taken with an
  # identity Hessian guess) moves about one pixel unit instead of ‖∇f‖, which jumps to the
  # box's corners and costs a long backtracking; later steps are scale-free (γ scaling).
  scale_first_step: bool = False
  chunk: int = 25  # iterations per compiled call (progress granularity)
  # Input gradients through convolutions with kernels flipped once outside the solver loop
  # (model.py); False uses XLA's own transpose, ~3x slower inside the loop on CPU.
  fast_backward: bool = True
  # With fast_backward, the convolutions that gain (model.winograd_pays) as Winograd F(4x4, 3x3)
  # (nets/winograd.py): "auto" = on the CPU, where it is faster (docs/benchmarks.md), on, off.
  winograd: str = "auto"
  # jax.checkpoint around the network: recompute activations in the backward pass instead of
  # keeping them (less memory at large sizes, ~1 extra forward per evaluation).
  remat: bool = False
  # One L-BFGS problem over the whole batch (the sum of the per-image losses) instead of one
  # per image vmapped: no per-image line searches waiting for the slowest image, but one
  # non-finite image stops the whole batch.
  joint: bool = False
  # The change's chroma solved at 1/chroma_scale of the resolution (1 = per pixel, the paper's).
  chroma_scale: int = 1
  # The change's luminance at 1/luma_scale of the resolution (1 = per pixel, the paper's); > 1
  # also keeps a per-pixel grid, used where z0's `fine` channel is 1 (see `__call__`).
  luma_scale: int = 1
  # The data-derived where mask (where.py): z = base + m ⊙ Δ; mode "off" = the paper's global edit.
  where: where_lib.WhereConfig = where_lib.WhereConfig(mode="off")
  # Iterations at half the size first, their change upsampled as the start (coarse_to_fine.py).
  coarse_iterations: int = 0

  @property
  def parameterised(self) -> bool:
    """Whether the solver moves the change's parameters (where.py) instead of the pixels."""
    return self.chroma_scale > 1 or self.luma_scale > 1 or self.where.mode != "off"

  def validate(self) -> None:
    for name, value, allowed in (
        ("solver", self.solver, SOLVERS), ("where", self.where.mode, where_lib.MODES),
        ("linesearch", self.linesearch, LINESEARCHES), ("winograd", self.winograd, networks.WINOGRAD),
        ("linesearch_init", self.linesearch_init, LINESEARCH_INITS)):
      if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if not self.tv_weight >= 0:
      raise ValueError(f"tv_weight (λ) must be >= 0, got {self.tv_weight}")
    if not self.tv_beta > 0:
      raise ValueError(f"tv_beta (β) must be > 0, got {self.tv_beta}")
    if self.chunk <= 0 or self.history <= 0 or self.coarse_iterations < 0:
      raise ValueError("chunk and history must be positive, coarse_iterations >= 0")
    for name in ("chroma_scale", "luma_scale"):
      if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")


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
  """`objective(z [H, W, 3], target [D], variables) -> scalar` for one image; with
  `config.parameterised`, `objective(u, (target [D], base [H, W, 3], where [H, W][,
  fine [H, W][, colour [H, W]]]), variables)` where u are the change's parameters
  (`where.zeros`) and z = `where.decode(u, base, where, fine, colour)` (fine left out: 0;
  colour left out: 1)."""

  apply = jax.checkpoint(net.apply) if config.remat else net.apply

  def objective(z, target, variables):
    if config.parameterised:
      target, base, where, *flags = target  # fine, colour: optional (0 and 1)
      z = where_lib.decode(z, base, where, *flags)
    taps = apply(variables, z[None])
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
  solution: object = None  # the solver's final variables: z `[B, H, W, 3]` or the change's


class ReverseMap:
  """A compiled reverse map for one network, feature layout and config.

  Keep one instance per setting: batches of the same shape reuse the compiled code.
  """

  def __init__(self, net, spec: features_lib.FeatureSpec, config: ReverseMapConfig):
    config.validate()
    self.net, self.spec, self.config = net, spec, config
    self.objective = make_objective(net, spec, config)
    batched = jax.vmap(self.objective, in_axes=(0, 0, None))
    self._losses = jax.jit(batched)
    fn = (lambda z, t, v: jnp.sum(batched(z, t, v))) if config.joint else self.objective
    self._init, self._step = guard.wrap(*SOLVER_TABLE[config.solver](self, fn))
    self._init = jax.jit(self._init if config.joint else jax.vmap(self._init, (0, 0, None)))
    self._chunk = jax.jit(self._make_chunk(), static_argnums=(3,))
    self._decode = jax.jit(jax.vmap(where_lib.decode))

  def _project(self, z):
    """Pixels onto [0, 1]; the change's parameters are free (`where.decode` clips z)."""
    return z if self.config.parameterised else jnp.clip(z, 0.0, 1.0)

  def _bounds(self, z):
    if self.config.parameterised:  # |Δ| <= 1 needs |YCbCr| < 2
      return tuple(jax.tree.map(lambda a: jnp.full_like(a, v), z) for v in (-2.0, 2.0))
    return jnp.zeros_like(z), jnp.ones_like(z)

  def _jaxopt_fns(self, fn):
    c = self.config
    scaled = lambda z, target, variables, scale: fn(z, target, variables) / scale
    linesearch = c.linesearch
    if linesearch == "armijo":
      linesearch = jaxopt.BacktrackingLineSearch(fun=scaled, maxiter=c.maxls, condition="armijo",
                                                 decrease_factor=0.5, jit=True, unroll=False)
    elif linesearch == "zoom" and c.c2 != 0.9:
      linesearch = jaxopt.ZoomLineSearch(fun=scaled, maxiter=c.maxls, c2=c.c2, max_stepsize=1.0,
                                         jit=True, unroll=False)
    elif linesearch == "backtracking" and c.c2 != 0.9:
      linesearch = jaxopt.BacktrackingLineSearch(fun=scaled, maxiter=c.maxls, c2=c.c2, jit=True,
                                                 unroll=False)
    # stepsize 0 = use the line search; > 0 = that fixed step, clipped into the box.
    stepsize = 1.0 if linesearch == "none" else 0.0
    solver = jaxopt.LBFGSB(fun=scaled, value_and_grad=False, maxiter=1 << 30,
                           tol=0.0, history_size=c.history,
                           linesearch="zoom" if linesearch == "none" else linesearch,
                           linesearch_init=c.linesearch_init, maxls=c.maxls, stepsize=stepsize)

    def init(z, target, variables):
      scale = jnp.asarray(1.0, jnp.float32)
      if c.scale_first_step:
        grad = jax.grad(fn)(z, target, variables)
        scale = jnp.maximum(jnp.sqrt(jnp.sum(grad * grad)), 1e-12)
      state = solver.init_state(z, self._bounds(z), target, variables, scale)
      return state, scale

    def step(z, state, target, variables):
      state, scale = state
      z, state = solver.update(z, state, self._bounds(z), target, variables, scale)
      # The extra gradient at z0 for the scale counts as one evaluation.
      evals = state.num_fun_eval + c.scale_first_step
      return z, (state, scale), state.value * scale, evals

    return init, step

  def _optax_fns(self, fn):
    c = self.config
    if c.linesearch == "none":
      return self._optax_unit_step_fns(fn)
    opt = optax.lbfgs(memory_size=c.history)

    def init(z, target, variables):
      # The line search leaves the value and gradient at the new point in the state; the first
      # ones go there too. (optax.value_and_grad_from_state decides with a lax.cond, which
      # under vmap evaluates both branches: one wasted evaluation per iteration.)
      value, grad = jax.value_and_grad(fn)(z, target, variables)
      opt_state = optax.tree.set(opt.init(z), value=value, grad=grad)
      return (opt_state, jnp.asarray(1, jnp.int32))

    def step(z, state, target, variables):
      opt_state, evals = state
      value_fn = lambda u: fn(u, target, variables)
      value = optax.tree.get(opt_state, "value")
      grad = optax.tree.get(opt_state, "grad")
      updates, opt_state = opt.update(grad, opt_state, z, value=value, grad=grad,
                                      value_fn=value_fn)
      # Projection onto the box; the stored gradient is the unprojected point's (L-BFGS +
      # projection, not L-BFGS-B).
      z = self._project(optax.apply_updates(z, updates))
      evals = evals + optax.tree.get(opt_state, "num_linesearch_steps")
      return z, (opt_state, evals), optax.tree.get(opt_state, "value"), evals

    return init, step

  def _optax_unit_step_fns(self, fn):
    """optax.lbfgs without line search: the full step (the first one scaled to a unit-norm
    move, `scale_init_precond`), then the projection; one evaluation per iteration, as the
    torch peer's torch.optim.LBFGS without line search."""
    opt = optax.lbfgs(learning_rate=1.0, memory_size=self.config.history, linesearch=None)
    value_and_grad = jax.value_and_grad(fn)

    def init(z, target, variables):
      value, grad = value_and_grad(z, target, variables)
      return opt.init(z), value, grad, jnp.asarray(1, jnp.int32)

    def step(z, state, target, variables):
      opt_state, value, grad, evals = state
      updates, opt_state = opt.update(grad, opt_state, z)
      z = self._project(optax.apply_updates(z, updates))
      value, grad = value_and_grad(z, target, variables)
      return z, (opt_state, value, grad, evals + 1), value, evals + 1

    return init, step

  def _make_chunk(self):
    def run(z, state, targets, n, variables):
      def one(z, state, target):
        def body(_, carry):
          z, state, value, evals, finite = carry
          z_new, state_new, value_new, evals_new = self._step(z, state, target, variables)
          ok = jnp.isfinite(value_new) & jnp.all(jnp.array([
              jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(z_new)]))
          # Once non-finite, an image stops moving; the caller reports it.
          keep = finite & ok
          z = jax.tree.map(lambda a, b: jnp.where(keep, a, b), z_new, z)
          state = jax.tree.map(lambda a, b: jnp.where(keep, a, b), state_new, state)
          return z, state, jnp.where(keep, value_new, value), evals_new, keep
        init = (z, state, jnp.asarray(jnp.inf, jnp.float32), jnp.asarray(0, jnp.int32),
                jnp.asarray(True))
        return jax.lax.fori_loop(0, n, body, init)
      if self.config.joint:
        z, state, value, evals, finite = one(z, state, targets)
        b = jax.tree.leaves(z)[0].shape[0]
        return (z, state, jnp.full((b,), value / b), jnp.full((b,), evals),
                jnp.full((b,), finite))
      z, state, value, evals, finite = jax.vmap(one)(z, state, targets)
      return z, state, value, evals, finite
    return lambda z, state, targets, n, variables: run(z, state, targets, n, variables)

  def __call__(self, params, targets: jax.Array, z0: jax.Array, iterations: int,
               progress: Callable[[int], None] | None = None, *,
               on_chunk: Callable[[int, np.ndarray], None] | None = None,
               start=None) -> ReverseMapResult:
    """Runs `iterations` L-BFGS iterations from `z0`.

    Args:
      params: VGG params pytree.
      targets: `[B, D]` float32 edit targets.
      z0: `[B, H, W, 3]` float32 in [0, 1] start (the input, or a previous δ's result), or
        `[B, H, W, 4]`: the start and the where mask m (`config.parameterised`: the result is
        z0 + m ⊙ Δ; without a mask m = 1), or `[B, H, W, 5]`: also the luminance map
        `fine` (`where.change`: 1 = per pixel; without it 0, all at 1/`luma_scale`), or
        `[B, H, W, 6]`: also, last, the colour map `colour` (`where.change`: 0 = luminance
        only; without it 1).
      start: with `config.parameterised`, the change's starting parameters (batched
        `where.zeros`; default no change); otherwise unused.
      iterations: > 0.
      progress: called after each chunk with the iterations it did.
      on_chunk: called after each chunk with (iterations done, `[B]` losses); for benchmarks.
    """
    if iterations <= 0:
      raise ValueError(f"iterations must be positive, got {iterations}")
    base, z, targets, variables = self._start(params, targets, z0, start)
    z, value, finite, evals_total, done = self._iterate(z, targets, variables, iterations,
                                                        progress, on_chunk)
    if self.config.joint:  # per-image losses (the solver only saw their sum)
      value = np.where(finite, np.asarray(self._losses(z, targets, variables)), np.nan)
    solution = z
    if self.config.parameterised:
      z = self._decode(z, base, *targets[2:])
    images = np.asarray(jnp.clip(z, 0.0, 1.0))
    return ReverseMapResult(images, value, finite, evals_total, done, solution)

  def _start(self, params, targets, z0, start):
    """`(base [B, H, W, 3], solver start, the objective's targets, network variables)`."""
    z = jnp.asarray(z0, jnp.float32)
    if z.ndim != 4 or z.shape[-1] not in (3, 4, 5, 6):
      raise ValueError(f"z0 must be [B, H, W, C] with C in 3…6, got {z.shape}")
    where = z[..., 3] if z.shape[-1] >= 4 else jnp.ones(z.shape[:3], jnp.float32)
    fine = z[..., 4] if z.shape[-1] >= 5 else jnp.zeros(z.shape[:3], jnp.float32)
    colour = z[..., 5] if z.shape[-1] == 6 else jnp.ones(z.shape[:3], jnp.float32)
    z = jnp.clip(z[..., :3], 0.0, 1.0)
    targets = jnp.asarray(targets, jnp.float32)
    if targets.shape != (z.shape[0], self.spec.dim):
      raise ValueError(f"targets must be [B, {self.spec.dim}] for z0 {z.shape}, "
                       f"got {targets.shape}")
    if self.config.coarse_iterations and start is None:  # the start from a half-size solve
      half = lambda spec: cached(self.net, spec, dataclasses.replace(self.config,
                                                                     coarse_iterations=0))
      z, start = coarse_to_fine.coarse_start(self, params, targets, jnp.concatenate(
          [z, where[..., None], fine[..., None], colour[..., None]], -1), half,
          self.config.coarse_iterations)
    base = z = jnp.clip(jnp.asarray(z, jnp.float32)[..., :3], 0.0, 1.0)
    if self.config.parameterised:  # the solver moves the change's parameters from 0
      targets = (targets, base, jnp.clip(where, 0.0, 1.0), jnp.clip(fine, 0.0, 1.0),
                 jnp.clip(colour, 0.0, 1.0))
      u = where_lib.zeros(z.shape[1:3], self.config.chroma_scale, self.config.luma_scale)
      z = start if start is not None else jax.tree.map(
          lambda a: jnp.broadcast_to(a, (base.shape[0],) + a.shape), u)
    # Flipped kernels computed here, outside the solver loop (see model.py).
    variables = {"params": params}
    if self.config.fast_backward:  # the network's table entry says how (`nets.networks`)
      variables.update(networks.backward_variables(self.net, params, self.config.winograd))
    return base, z, targets, variables

  def _iterate(self, z, targets, variables, iterations: int, progress, on_chunk):
    """Compiled chunks: `(z, [B] losses, [B] finite, [B] evaluations, iterations done)`."""
    state = self._init(z, targets, variables)
    b = jax.tree.leaves(targets)[0].shape[0]
    finite, evals_total, done = np.ones(b, bool), np.zeros(b, np.int64), 0
    value = np.full(b, np.nan, np.float32)
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
      if on_chunk is not None:
        on_chunk(done, value)
      if not finite.any():
        break
    return (*guard.pick(z, value, state), finite, evals_total, done)


# The solver table: name -> the `ReverseMap` method building its `(init, step)` pair over the
# objective `fn(z, target, variables)`. A new solver = one such method + one entry here.
SOLVER_TABLE: dict[str, Callable] = {"jaxopt_lbfgsb": ReverseMap._jaxopt_fns,
                                     "optax_lbfgs": ReverseMap._optax_fns}
SOLVERS = tuple(SOLVER_TABLE)


@functools.lru_cache(maxsize=8)
def cached(net, spec: features_lib.FeatureSpec, config: ReverseMapConfig) -> ReverseMap:
  """One `ReverseMap` per (network, feature layout, config) in this process: runs that repeat a
  setting (sweeps, tests, experiments in one process) reuse its compiled solver."""
  return ReverseMap(net, spec, config)
