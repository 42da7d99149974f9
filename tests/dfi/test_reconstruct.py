"""The reverse map's loss terms and solver, against finite differences and SciPy's L-BFGS-B."""

import numpy as np
import pytest
import scipy.optimize

import jax
import jax.numpy as jnp
from jax.test_util import check_grads

from dfi_jax.nets import model as model_lib
from dfi_jax.dfi import reconstruct
import tiny_problem

SIZE = 32


@pytest.fixture(scope="module")
def setup():
  return tiny_problem.reverse_map_problem(SIZE)


def test_total_variation_matches_definition_and_gradient():
  rng = np.random.default_rng(1)
  z = rng.uniform(size=(6, 7, 3))
  d = z * 255.0
  dx, dy = d[:-1, 1:] - d[:-1, :-1], d[1:, :-1] - d[:-1, :-1]
  for beta in (1.0, 2.0, 3.0):
    want = np.sum(np.maximum(dx ** 2 + dy ** 2, 1e-3) ** (beta / 2))
    got = float(reconstruct.total_variation(jnp.asarray(z, jnp.float32), beta))
    assert got == pytest.approx(want, rel=1e-5)
  check_grads(lambda u: reconstruct.total_variation(u, 2.0) / 1e4,
              (jnp.asarray(z, jnp.float32),), order=1, modes=["rev"], eps=1e-3, atol=2e-2,
              rtol=2e-2)


def test_objective_gradient_matches_finite_differences(setup):
  params, net, spec, x, target = setup
  config = reconstruct.ReverseMapConfig(tv_weight=1e-4)
  objective = reconstruct.make_objective(net, spec, config)
  variables = {"params": params, "backward": model_lib.backward_kernels(params)}
  f = lambda z: objective(z, jnp.asarray(target[0]), variables)
  z = jnp.asarray(x[0])
  g = jax.grad(f)(z)
  rng = np.random.default_rng(2)
  for _ in range(3):
    v = jnp.asarray(rng.standard_normal(z.shape), jnp.float32)
    v = v / jnp.linalg.norm(v)
    h = 1e-2
    fd = (f(z + h * v) - f(z - h * v)) / (2 * h)
    assert float(jnp.vdot(g, v)) == pytest.approx(float(fd), rel=2e-2, abs=1e-3 * abs(float(f(z))))


def test_feature_loss_is_mean_over_layers_of_half_squared_error(setup):
  _, _, spec, _, _ = setup
  rng = np.random.default_rng(3)
  a, b = rng.standard_normal((2, spec.dim)).astype(np.float32)
  sizes = spec.sizes
  want = 0.5 * (np.sum((a[:sizes[0]] - b[:sizes[0]]) ** 2) + np.sum((a[sizes[0]:] - b[sizes[0]:]) ** 2)) / 2
  assert float(reconstruct.feature_loss(jnp.asarray(a), jnp.asarray(b), spec)) == pytest.approx(want, rel=1e-5)


def scipy_solve(objective, variables, target, z0, iterations):
  fg = jax.jit(jax.value_and_grad(lambda z: objective(z, target, variables)))

  def fun(flat):
    v, g = fg(jnp.asarray(flat.reshape(z0.shape), jnp.float32))
    return float(v), np.asarray(g, np.float64).ravel()

  res = scipy.optimize.minimize(fun, z0.ravel().astype(np.float64), jac=True, method="L-BFGS-B",
                                bounds=[(0.0, 1.0)] * z0.size,
                                options=dict(maxiter=iterations, maxcor=10))
  return res.fun


@pytest.mark.parametrize("solver", ["jaxopt_lbfgsb", "optax_lbfgs"])
def test_reverse_map_reaches_scipys_loss(setup, solver):
  params, net, spec, x, target = setup
  config = reconstruct.ReverseMapConfig(tv_weight=1e-4, solver=solver, linesearch="backtracking",
                                        linesearch_init="max", chunk=10)
  rm = reconstruct.ReverseMap(net, spec, config)
  result = rm(params, target, x, 30)
  variables = {"params": params}
  start = [float(rm.objective(jnp.asarray(x[i]), jnp.asarray(target[i]), variables))
           for i in range(2)]
  reference = [scipy_solve(rm.objective, variables, jnp.asarray(target[i]), x[i], 30)
               for i in range(2)]
  assert result.finite.all()
  assert result.images.min() >= 0.0 and result.images.max() <= 1.0
  for i in range(2):
    assert result.loss[i] < 0.5 * start[i]
    assert result.loss[i] <= 1.3 * reference[i], (result.loss[i], reference[i])


@pytest.mark.parametrize("solver", ["jaxopt_lbfgsb", "optax_lbfgs"])
def test_without_line_search_one_evaluation_per_iteration(setup, solver):
  params, net, spec, x, target = setup
  config = reconstruct.ReverseMapConfig(tv_weight=1e-4, solver=solver, linesearch="none",
                                        scale_first_step=solver == "jaxopt_lbfgsb", chunk=10)
  rm = reconstruct.ReverseMap(net, spec, config)
  result = rm(params, target, x, 30)
  variables = {"params": params}
  assert result.finite.all()
  assert result.images.min() >= 0.0 and result.images.max() <= 1.0
  # 1 at z0 (+ 1 for jaxopt's first-step scale) + 1 per iteration.
  assert list(result.evaluations) == [31 + (solver == "jaxopt_lbfgsb")] * 2
  for i in range(2):
    start = float(rm.objective(jnp.asarray(x[i]), jnp.asarray(target[i]), variables))
    reference = scipy_solve(rm.objective, variables, jnp.asarray(target[i]), x[i], 30)
    assert result.loss[i] < 0.5 * start
    assert result.loss[i] <= 1.5 * reference, (result.loss[i], reference)


def test_non_finite_loss_stops_only_that_image(setup):
  params, net, spec, x, target = setup
  bad = target.copy()
  bad[1, :5] = np.nan
  rm = reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig(chunk=2))
  result = rm(params, bad, x, 4)
  assert list(result.finite) == [True, False]
  assert np.isfinite(result.images[0]).all()


def test_bad_settings_are_rejected(setup):
  params, net, spec, x, target = setup
  with pytest.raises(ValueError, match="tv_weight"):
    reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig(tv_weight=-1.0))
  with pytest.raises(ValueError, match="tv_beta"):
    reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig(tv_beta=0.0))
  rm = reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig())
  with pytest.raises(ValueError, match="iterations"):
    rm(params, target, x, 0)
  with pytest.raises(ValueError, match="targets must be"):
    rm(params, target[:, :-1], x, 1)


def test_joint_batch_and_plain_backward_reach_the_same_losses(setup):
  params, net, spec, x, target = setup
  base = dict(tv_weight=1e-4, chunk=5)
  plain = reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig(**base))(
      params, target, x, 10)
  slow = reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig(
      fast_backward=False, remat=True, **base))(params, target, x, 10)
  np.testing.assert_allclose(slow.loss, plain.loss, rtol=1e-2)
  seen = []
  joint = reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig(joint=True, **base))(
      params, target, x, 10, on_chunk=lambda done, loss: seen.append(done))
  assert seen == [5, 10]
  assert joint.finite.all() and joint.loss.shape == (2,)
  variables = {"params": params}
  for i in range(2):
    want = float(reconstruct.make_objective(net, spec, reconstruct.ReverseMapConfig(
        tv_weight=1e-4))(jnp.asarray(joint.images[i]), jnp.asarray(target[i]), variables))
    assert joint.loss[i] == pytest.approx(want, rel=1e-4)
    assert joint.loss[i] <= 1.3 * plain.loss[i]


def test_a_parameterised_solve_returns_its_parameters_and_starts_from_given_ones(setup):
  """`solution` is what the images decode from; `start` resumes from it (coarse to fine,
  research/coarse_to_fine.py, starts the full-size solve from upsampled parameters)."""
  from dfi_jax.dfi import where as where_lib
  params, net, spec, x, target = setup
  rm = reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig(
      tv_weight=1e-4, chroma_scale=2, linesearch="none", chunk=3))
  first = rm(params, target, x, 3)
  decoded = jax.vmap(where_lib.decode)(first.solution, jnp.asarray(x),
                                       jnp.ones(x.shape[:3], jnp.float32))
  np.testing.assert_array_equal(np.asarray(decoded), first.images)
  resumed = rm(params, target, x, 3, start=first.solution)
  fresh = rm(params, target, x, 3)
  np.testing.assert_array_equal(fresh.images, first.images)  # default start: no change
  assert (resumed.loss < first.loss).all(), (resumed.loss, first.loss)
  plain = reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig(chunk=3))(
      params, target, x, 3)
  np.testing.assert_array_equal(np.asarray(plain.solution), plain.images)
