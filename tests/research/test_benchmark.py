"""research/benchmark.py and solvers.py: a tiny smoke run, FLOPs, solver specs (no timing asserts)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from research import solvers

TINY = dict(seed=0, size=32, batch=1, iterations=4, chunk=2, width=1 / 16,
            taps=["conv2_1", "conv3_1"], tv_weight=0.001, tv_beta=2.0)


def test_vgg19_flops_match_the_issue():
  taps = ("conv3_1", "conv4_1", "conv5_1")
  assert solvers.conv_gflop(200, taps) == pytest.approx(28.83, abs=0.01)
  assert solvers.conv_gflop(64, taps) == pytest.approx(2.96, abs=0.01)


def test_solver_specs_parse_and_reject_unknown_fields():
  assert solvers.parse_solver("jaxopt_lbfgsb:linesearch=zoom,maxls=5,fast_backward=0") == (
      "jaxopt_lbfgsb", dict(linesearch="zoom", maxls=5, fast_backward=False))
  with pytest.raises(ValueError, match="nosuch"):
    solvers.parse_solver("optax_lbfgs:nosuch=1")
  with pytest.raises(ValueError, match="unknown solver"):
    solvers.parse_solver("adam")


def test_time_to_loss_is_the_first_reading_at_or_below_the_goal():
  trajectory = [(1.0, 10, 5.0), (2.0, 20, 3.0), (3.0, 30, 2.0)]
  assert solvers.time_to_loss(trajectory, 3.0) == 2.0
  assert solvers.time_to_loss(trajectory, 1.0) is None


def test_worker_runs_and_scores_with_the_shared_objective():
  out = solvers.worker(dict(TINY, solver="optax_lbfgs"))
  assert out["iterations"] == 4 and out["finite"]
  assert out["loss"] < out["start_loss"]
  assert [p[1] for p in out["trajectory"]] == [2, 4]
  scipy_out = solvers.worker(dict(TINY, solver="scipy"))
  assert scipy_out["start_loss"] == pytest.approx(out["start_loss"])
  assert scipy_out["loss"] < scipy_out["start_loss"]


def test_torch_peer_has_the_identical_objective():  # torch: in the test extra
  out = solvers.worker(dict(TINY, solver="torch"))
  assert out["torch_start_loss"] == pytest.approx(out["start_loss"], rel=1e-4)
  assert out["evaluations"] == out["iterations"] == 4


def test_torch_peer_solves_the_products_objective_identically():
  """The product objective (where mask + coarse chroma): torch's loss and gradient at the same
  nonzero change parameters equal the JAX objective's (decode, resize and clip included)."""
  import jax
  import jax.numpy as jnp
  import torch
  from dfi_jax.dfi import reconstruct
  spec = dict(TINY, batch=2, objective="product")
  problem = solvers.make_problem(spec)
  assert 0 < problem["where"].mean() < 1 and problem["base"].chroma_scale == 4
  loss_t, decode, start = solvers.torch_problem(spec, problem)
  assert [tuple(p.shape) for p in start] == [(2, 1, 32, 32), (2, 2, 8, 8)]
  rng = np.random.default_rng(0)
  u = dict(luma=rng.normal(0, 0.1, (2, 32, 32)).astype(np.float32),
           chroma=rng.normal(0, 0.1, (2, 8, 8, 2)).astype(np.float32))
  objective = reconstruct.make_objective(problem["net"], problem["fspec"], problem["base"])
  value, grad = jax.vmap(jax.value_and_grad(objective), in_axes=(0, 0, None))(
      u, tuple(jnp.asarray(a) for a in (problem["targets"], problem["z0"], problem["where"])),
      {"params": problem["params"]})
  params = [torch.tensor(u["luma"][:, None], requires_grad=True),
            torch.tensor(u["chroma"].transpose(0, 3, 1, 2).copy(), requires_grad=True)]
  loss = loss_t(params)
  loss.sum().backward()
  np.testing.assert_allclose(loss.detach().numpy(), np.asarray(value), rtol=1e-4)
  for g_jax, g_torch in ((grad["luma"], params[0].grad[:, 0]),
                         (grad["chroma"], params[1].grad.permute(0, 2, 3, 1))):
    g_jax = np.asarray(g_jax)
    assert np.abs(g_torch.numpy() - g_jax).max() <= 1e-4 * np.abs(g_jax).max()
  # Both solve from the same start and are scored on the decoded image.
  out = solvers.worker(dict(spec, solver="torch"))
  ours = solvers.worker(dict(spec, solver="optax_lbfgs"))
  assert out["torch_start_loss"] == pytest.approx(out["start_loss"], rel=1e-4)
  assert ours["start_loss"] == pytest.approx(out["start_loss"])
  assert ours["loss"] < ours["start_loss"] and out["loss"] < out["start_loss"]
  assert ours["objective"] == out["objective"] == "product"


def test_command_line_smoke_run_writes_table_and_json(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run(
      [sys.executable, "-m", "research.benchmark",
       "--config=experiments/configs/benchmark.py:tiny", "--in_process", "--batch_sizes=1",
       "--solvers=torch;scipy", "--objectives=plain", f"--json_out={out}"], capture_output=True, text=True,
      timeout=600, cwd=pathlib.Path(__file__).resolve().parents[2])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "| 32² | 1 | plain | scipy |" in proc.stdout
  record = json.loads(out.read_text())
  assert [r["solver"] for r in record["rows"]][-1] == "scipy"
  assert np.isfinite(record["rows"][-1]["loss"])
