"""Coarse to fine: the half-size problem, the full-size start, and the run option (no timings)."""

import dataclasses

import numpy as np
import pytest

import jax.numpy as jnp

from dfi_jax.dfi import coarse_to_fine
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import reconstruct
from research import solvers

TINY = dict(seed=0, size=32, batch=2, width=1 / 16, taps=["conv2_1", "conv3_1"],
            tv_weight=0.001, tv_beta=2.0)


def test_no_edit_gives_the_half_images_own_features_and_no_change():
  """With the target φ(x) (no edit direction) the half-size target is φ of the half-size
  image, and a half-size result equal to its start carries no change up to full size."""
  p = solvers.make_problem(dict(TINY, objective="plain"))
  phi = features_lib.make_phi(p["net"])
  targets = np.asarray(phi(p["params"], jnp.asarray(p["z0"])))
  spec, half_targets, small = coarse_to_fine.half_problem(
      p["net"], p["params"], p["fspec"], targets, p["start"])
  assert small.shape == (2, 16, 16, 3) and spec.dim == half_targets.shape[1]
  np.testing.assert_allclose(np.asarray(half_targets), np.asarray(phi(p["params"], small)),
                             atol=1e-5)
  same = reconstruct.ReverseMapResult(np.asarray(small), None, None, None, 0, None)
  z0, start = coarse_to_fine.upsample_start(same, small, p["start"], p["base"])
  assert start is None
  np.testing.assert_allclose(z0, p["z0"], atol=1e-6)


def test_the_product_objective_carries_the_parameters_up():
  p = solvers.make_problem(dict(TINY, objective="product"))
  config = dataclasses.replace(p["base"], linesearch="none", chunk=2)
  spec, half_targets, small = coarse_to_fine.half_problem(
      p["net"], p["params"], p["fspec"], p["targets"], p["start"])
  assert small.shape == (2, 16, 16, 4)  # the image and its where mask
  half = reconstruct.ReverseMap(p["net"], spec, config)(p["params"], half_targets, small, 2)
  z0, start = coarse_to_fine.upsample_start(half, small, p["start"], config)
  assert start["luma"].shape == (2, 32, 32) and start["chroma"].shape == (2, 8, 8, 2)
  assert float(jnp.abs(start["luma"]).max()) > 0
  full = reconstruct.ReverseMap(p["net"], p["fspec"], config)
  assert np.isfinite(full(p["params"], p["targets"], z0, 2, start=start).loss).all()


def test_the_run_option_is_the_half_size_solve_then_the_full_size_one():
  """`coarse_iterations` = the half-size solve, its change carried up, then `iterations` at full
  size — the same result as doing those steps by hand — and it is validated."""
  p = solvers.make_problem(dict(TINY, objective="product"))
  config = dataclasses.replace(p["base"], linesearch="none", chunk=2)
  args = (p["params"], p["targets"], p["start"])
  got = reconstruct.ReverseMap(p["net"], p["fspec"], dataclasses.replace(
      config, coarse_iterations=2))(*args, 2)
  spec, half_targets, small = coarse_to_fine.half_problem(
      p["net"], p["params"], p["fspec"], p["targets"], p["start"])
  half = reconstruct.ReverseMap(p["net"], spec, config)(p["params"], half_targets, small, 2)
  z0, start = coarse_to_fine.upsample_start(half, small, p["start"], config)
  want = reconstruct.ReverseMap(p["net"], p["fspec"], config)(*args[:2], z0, 2, start=start)
  np.testing.assert_allclose(got.images, want.images, atol=1e-6)
  plain = reconstruct.ReverseMap(p["net"], p["fspec"], config)(*args, 2)
  assert np.abs(got.images - plain.images).max() > 1e-3  # the coarse start changed the solve
  with pytest.raises(ValueError, match="coarse_iterations"):
    reconstruct.ReverseMapConfig(coarse_iterations=-1).validate()


def test_a_half_size_too_small_for_the_taps_is_named():
  p = solvers.make_problem(dict(TINY, size=4, batch=1, objective="plain"))  # conv3_1: 1x1
  with pytest.raises(ValueError, match="coarse_iterations: the half-size image"):
    coarse_to_fine.half_problem(p["net"], p["params"], p["fspec"], p["targets"], p["start"])


def test_the_run_config_field_is_validated_by_name():
  from dfi_jax.configs import synthetic
  from dfi_jax.runs import kit
  config = synthetic.get_config("tiny")
  assert config.coarse_iterations == 0  # off by default
  config.coarse_iterations = -1
  with pytest.raises(kit.RunError, match="coarse_iterations"):
    kit.validate(config)
  config.coarse_iterations = 25
  kit.validate(config)
  assert kit.reverse_map_config(config).coarse_iterations == 25
