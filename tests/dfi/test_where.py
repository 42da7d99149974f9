"""The data-derived where mask and the change's parameterisation (luminance + coarse chroma)."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import pipeline
from dfi_jax.dfi import reconstruct
from dfi_jax.dfi import where as where_lib
import tiny_problem

SIZE = 32
SPEC = features_lib.FeatureSpec(("a", "b"), ((8, 8, 4), (4, 4, 6)))


def _w_at(rows, cols, batch=2, seed=0):
  """`[batch, D]` w whose energy lives in the image block rows × cols (in every tap) plus a
  little noise elsewhere."""
  rng = np.random.default_rng(seed)
  parts = []
  for h, w, c in SPEC.shapes:
    v = 0.02 * rng.standard_normal((batch, h, w, c))
    r = slice(rows.start * h // SIZE, -(-rows.stop * h // SIZE))
    q = slice(cols.start * w // SIZE, -(-cols.stop * w // SIZE))
    v[:, r, q] += rng.standard_normal((batch, r.stop - r.start, q.stop - q.start, c))
    parts.append(v.reshape(batch, -1))
  return jnp.asarray(np.concatenate(parts, 1), jnp.float32)


def test_the_mask_follows_ws_energy_and_off_is_everywhere():
  w = _w_at(slice(20, 28), slice(8, 24))  # a "mouth" low in the face
  m = where_lib.mask(w, SPEC, (SIZE, SIZE), where_lib.WhereConfig())
  assert m.shape == (2, SIZE, SIZE) and m.dtype == np.float32
  assert m.min() >= 0 and m.max() <= 1
  assert (m[:, 22:26, 12:20] > 0.9).all()  # where w lives
  assert (m[:, :8] == 0).all() and (m[:, :, :3] == 0).all()  # far from it: exactly 0
  soft = m[(m > 0) & (m < 1)]
  assert soft.size > 20  # a soft edge, not a cut
  off = where_lib.mask(w, SPEC, (SIZE, SIZE), where_lib.WhereConfig(mode="off"))
  np.testing.assert_array_equal(off, 1.0)
  with pytest.raises(ValueError, match="low < high"):
    where_lib.mask(w, SPEC, (SIZE, SIZE), where_lib.WhereConfig(low=0.7, high=0.3))


def test_the_compiled_mask_is_the_op_by_op_one():
  """`mask` runs `energy` compiled (speed only): the same mask as `energy` op by op, for each
  σ and image shape it is asked for."""
  w = _w_at(slice(4, 12), slice(10, 30), seed=3)
  for shape, config in (((SIZE, SIZE), where_lib.WhereConfig()),
                        ((24, 40), where_lib.WhereConfig(sigma=0.1, low=0.2, high=0.5))):
    e = np.asarray(where_lib.energy(w, SPEC, shape, config.sigma))
    expected = np.clip((e - config.low) / (config.high - config.low), 0, 1)
    np.testing.assert_allclose(where_lib.mask(w, SPEC, shape, config), expected, atol=1e-5)


def test_decode_keeps_the_base_where_the_mask_is_zero_and_chroma_is_coarse():
  rng = np.random.default_rng(1)
  base = jnp.asarray(rng.uniform(0.2, 0.8, (SIZE, SIZE, 3)), jnp.float32)
  params = {k: jnp.asarray(rng.normal(0, 0.05, v.shape), jnp.float32)
            for k, v in where_lib.zeros((SIZE, SIZE), 4).items()}
  assert params["chroma"].shape == (8, 8, 2) and params["luma"].shape == (SIZE, SIZE)
  where = np.zeros((SIZE, SIZE), np.float32)
  where[8:24, 8:24] = 1.0
  z = np.asarray(where_lib.decode(params, base, jnp.asarray(where)))
  np.testing.assert_array_equal(z[where == 0], np.asarray(base)[where == 0])
  assert np.abs(z - base)[where == 1].mean() > 0.01
  # Luminance-only parameters change no chroma; the chroma of a coarse change is smooth.
  change = np.asarray(where_lib.change(dict(params, chroma=0 * params["chroma"]), (SIZE, SIZE)))
  np.testing.assert_allclose(change[..., 0], change[..., 1], atol=1e-5)
  np.testing.assert_allclose(change[..., 0], change[..., 2], atol=1e-5)
  coarse = np.asarray(where_lib.change(params, (SIZE, SIZE)))
  fine = np.asarray(where_lib.change(
      {k: jnp.asarray(rng.normal(0, 0.05, v.shape), jnp.float32)
       for k, v in where_lib.zeros((SIZE, SIZE), 1).items()}, (SIZE, SIZE)))
  assert where_lib.chroma_highpass(coarse, 4) < 0.4 * where_lib.chroma_highpass(fine, 4)


@pytest.fixture(scope="module")
def problem():
  return tiny_problem.reverse_map_problem(SIZE)


def _solve(problem, iterations=8, with_mask=True, **fields):
  params, net, spec, x, target = problem
  config = reconstruct.ReverseMapConfig(tv_weight=1e-5, linesearch="none", chunk=4, **fields)
  where = np.zeros(x.shape[:3], np.float32)
  where[:, 6:20, 10:26] = 1.0
  z0 = np.concatenate([x, where[..., None]], -1) if with_mask else x
  result = reconstruct.ReverseMap(net, spec, config)(params, target, z0, iterations)
  assert result.finite.all() and result.images.shape == x.shape
  return result.images - x, where


@pytest.mark.parametrize("solver", ["optax_lbfgs", "jaxopt_lbfgsb"])
def test_the_where_mask_keeps_the_image_outside_it_and_off_changes_everywhere(problem, solver):
  masked, where = _solve(problem, solver=solver, where=where_lib.WhereConfig())
  assert np.abs(masked[where == 0]).max() == 0.0  # exactly the input outside
  assert np.abs(masked[where == 1]).mean() > 1e-3  # the edit happens inside
  free, _ = _solve(problem, with_mask=False, solver=solver)
  assert np.abs(free[where == 0]).mean() > 1e-3  # the paper's global edit changes outside


def test_coarse_chroma_removes_the_changes_high_frequency_colour(problem):
  coarse, _ = _solve(problem, with_mask=False, chroma_scale=4)
  fine, _ = _solve(problem, with_mask=False)
  noisy = [where_lib.chroma_highpass(c, 4) for c in fine]
  clean = [where_lib.chroma_highpass(c, 4) for c in coarse]
  assert max(clean) < 0.3 * min(noisy)


def test_settings_are_checked():
  with pytest.raises(ValueError, match="chroma_scale"):
    reconstruct.ReverseMapConfig(chroma_scale=0).validate()
  with pytest.raises(ValueError, match="where"):
    reconstruct.ReverseMapConfig(where=where_lib.WhereConfig(mode="hands")).validate()
  assert not reconstruct.ReverseMapConfig().parameterised  # the class default is the paper's
  assert reconstruct.ReverseMapConfig(chroma_scale=2).parameterised


def test_the_pipeline_makes_one_mask_per_item_edit_major(problem):
  params, net, spec, x, target = problem
  on = pipeline.make(net, params, SIZE, reconstruct.ReverseMapConfig(
      where=where_lib.WhereConfig(), linesearch="none"))
  ws = [jnp.asarray(target - target.mean()), -jnp.asarray(target - target.mean())]
  masks = pipeline.where_masks(on, ws, (SIZE, SIZE))
  assert masks.shape == (4, SIZE, SIZE)
  np.testing.assert_allclose(masks[:2], masks[2:])  # ‖w‖ = ‖−w‖
  off = pipeline.make(net, params, SIZE, reconstruct.ReverseMapConfig(linesearch="none"))
  assert pipeline.where_masks(off, ws, (SIZE, SIZE)) is None


def _luma_highpass(change, scale=2):
  """RMS of `[H, W, 3]`'s luminance minus its own box average over `scale`² blocks."""
  y = np.asarray(change, np.float64) @ where_lib.YCC_FROM_RGB[0].astype(np.float64)
  h, w = y.shape
  blocks = y.reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))
  return float(np.sqrt(np.mean((y - np.repeat(np.repeat(blocks, scale, 0), scale, 1)) ** 2)))


def test_coarse_luma_has_its_own_parameters_and_no_one_pixel_texture(problem):
  u = where_lib.zeros((31, 32), 4, 2)
  assert u["luma"].shape == (16, 16) and u["chroma"].shape == (8, 8, 2)
  assert where_lib.zeros((31, 32), 4)["luma"].shape == (31, 32)  # 1: per pixel, the paper's
  coarse, where = _solve(problem, where=where_lib.WhereConfig(), luma_scale=2)
  fine, _ = _solve(problem, where=where_lib.WhereConfig())
  assert np.abs(coarse[where == 0]).max() == 0.0 and np.abs(coarse[where == 1]).mean() > 1e-3
  # Inside the mask only (this test's mask has a sharp edge of its own).
  rough = [_luma_highpass(c * m[..., None]) for c, m in zip(fine, where)]
  smooth = [_luma_highpass(c * m[..., None]) for c, m in zip(coarse, where)]
  assert max(smooth) < 0.5 * min(rough), (smooth, rough)
  with pytest.raises(ValueError, match="luma_scale"):
    reconstruct.ReverseMapConfig(luma_scale=0).validate()
  assert reconstruct.ReverseMapConfig(luma_scale=2).parameterised


def test_detail_share_tells_a_smooth_tone_change_from_thin_lines():
  yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
  smooth = np.repeat((0.3 * np.exp(-((yy - 0.3) ** 2 + (xx - 0.5) ** 2) / 0.05))[..., None], 3, -1)
  lines = np.zeros((SIZE, SIZE, 3))
  lines[10, 4:28] = lines[20, 4:28] = -0.4  # one-pixel frames
  assert where_lib.detail_share(smooth, 2) < 0.01
  assert where_lib.detail_share(lines, 2) > 0.3
  assert where_lib.detail_share(np.zeros((SIZE, SIZE, 3)), 2) == 0.0
  chroma_only = np.zeros((SIZE, SIZE, 3))
  chroma_only[::2, :, 0], chroma_only[::2, :, 1] = 0.1, -0.1 * 0.299 / 0.587  # no luminance
  assert where_lib.detail_share(chroma_only, 2) == pytest.approx(0.0, abs=1e-6)


def test_fine_blends_the_two_luminance_grids_and_the_unused_one_gets_no_gradient():
  rng = np.random.default_rng(2)
  params = {k: jnp.asarray(rng.normal(0, 0.05, v.shape), jnp.float32)
            for k, v in where_lib.zeros((SIZE, SIZE), 4, 2).items()}
  assert params["luma"].shape == (16, 16) and params["luma_fine"].shape == (SIZE, SIZE)
  no_fine = {k: v for k, v in params.items() if k != "luma_fine"}
  np.testing.assert_array_equal(where_lib.change(params, (SIZE, SIZE), 0.0),
                                where_lib.change(no_fine, (SIZE, SIZE)))
  per_pixel = dict(no_fine, luma=params["luma_fine"])
  np.testing.assert_allclose(where_lib.change(params, (SIZE, SIZE), 1.0),
                             where_lib.change(per_pixel, (SIZE, SIZE)), atol=1e-6)
  for fine, unused in ((0.0, "luma_fine"), (1.0, "luma")):
    grad = jax.grad(lambda p: jnp.sum(where_lib.change(p, (SIZE, SIZE), fine) ** 2))(params)
    assert np.abs(grad[unused]).max() == 0.0
    assert np.abs(grad["luma" if unused == "luma_fine" else "luma_fine"]).max() > 0


def test_each_item_is_solved_at_its_own_luminance_resolution(problem):
  """z0's 5th channel picks per item: the item flagged 1 gets the per-pixel solve, the one
  flagged 0 the coarse one, as if each were solved alone under that setting."""
  params, net, spec, x, target = problem
  where = np.zeros(x.shape[:3], np.float32)
  where[:, 6:20, 10:26] = 1.0
  z0 = pipeline.extra_channels(x, where, np.array([1.0, 0.0]))
  assert z0.shape == x.shape[:3] + (5,)

  def run(z, **fields):
    config = reconstruct.ReverseMapConfig(tv_weight=1e-5, linesearch="none", chunk=4,
                                          where=where_lib.WhereConfig(), **fields)
    return reconstruct.ReverseMap(net, spec, config)(params, target, z, 8).images

  mixed = run(z0, luma_scale=2)
  per_pixel = run(z0[..., :4], luma_scale=1)
  coarse = run(z0[..., :4], luma_scale=2)  # no 5th channel: every item at 1/luma_scale
  np.testing.assert_allclose(mixed[0], per_pixel[0], atol=2e-4)
  np.testing.assert_allclose(mixed[1], coarse[1], atol=2e-4)
  assert np.abs(per_pixel[1] - coarse[1]).max() > 1e-2  # the two settings do differ


def test_the_pixel_mask_follows_the_differences_norm():
  """1 around the difference's strongest pixels, 0 where the neighbours do not differ, the ramp
  between; a zero difference gives no mask, and a bad ramp is refused."""
  difference = np.zeros((16, 16, 3), np.float32)
  difference[4, 4] = [0.0, -0.5, 0.0]  # strong, and only in one channel: the norm counts it
  difference[12, 12] = [0.05, 0.05, 0.05]  # 0.17 of the strong one's norm
  m = where_lib.pixel_mask(difference, 0.0, 0.1, 0.4)
  assert m.shape == (16, 16) and m.dtype == np.float32
  assert m[4, 4] == 1.0 and m[12, 12] == pytest.approx((np.sqrt(3) * 0.1 - 0.1) / 0.3, rel=1e-4)
  assert m[0, 15] == 0.0 and m[8, 8] == 0.0
  blurred = where_lib.pixel_mask(difference, 1.0, 0.1, 0.4)
  assert blurred[4, 5] > 0 and blurred[4, 4] == 1.0 and blurred[0, 15] == 0.0
  assert not where_lib.pixel_mask(np.zeros((8, 8, 3)), 1.0, 0.1, 0.4).any()
  with pytest.raises(ValueError, match="low < high"):
    where_lib.pixel_mask(difference, 1.0, 0.4, 0.4)



def test_chroma_share_tells_a_colourless_shape_from_a_coloured_one():
  """A darkening (equal RGB) has no chroma; a change of hue at equal luminance is all chroma;
  the share is computed in the same YCbCr the change is solved in."""
  dark = np.zeros((SIZE, SIZE, 3), np.float32)
  dark[12:16, 8:24] = -0.3
  assert where_lib.chroma_share(dark) == pytest.approx(0.0, abs=1e-9)
  hue = np.zeros((SIZE, SIZE, 3), np.float32)
  hue[12:16, 8:24] = [0.2, -0.2 * 0.299 / 0.587, 0.0]  # no luminance change
  assert where_lib.chroma_share(hue) == pytest.approx(1.0, abs=1e-6)
  both = dark + hue
  ycc = both[12, 8] @ where_lib.YCC_FROM_RGB.T
  assert where_lib.chroma_share(both) == pytest.approx(
      (ycc[1] ** 2 + ycc[2] ** 2) / np.sum(ycc ** 2), rel=1e-5)
  assert where_lib.chroma_share(np.zeros((8, 8, 3))) == 0.0


def test_colour_zero_is_luminance_only_and_its_chroma_gets_no_gradient():
  rng = np.random.default_rng(3)
  params = {k: jnp.asarray(rng.normal(0, 0.05, v.shape), jnp.float32)
            for k, v in where_lib.zeros((SIZE, SIZE), 2, 1).items()}
  with_colour = np.asarray(where_lib.change(params, (SIZE, SIZE)))
  np.testing.assert_array_equal(where_lib.change(params, (SIZE, SIZE), 0.0, 1.0), with_colour)
  grey = np.asarray(where_lib.change(params, (SIZE, SIZE), 0.0, 0.0))
  ycc = grey @ where_lib.YCC_FROM_RGB.T
  np.testing.assert_allclose(ycc[..., 1:], 0.0, atol=1e-6)  # no chroma left
  np.testing.assert_allclose(ycc[..., 0], (with_colour @ where_lib.YCC_FROM_RGB.T)[..., 0],
                             atol=1e-6)  # the same luminance
  grad = jax.grad(lambda p: jnp.sum(where_lib.change(p, (SIZE, SIZE), 0.0, 0.0) ** 2))(params)
  assert np.abs(grad["chroma"]).max() == 0.0 and np.abs(grad["luma"]).max() > 0


def test_each_item_draws_colour_by_its_own_flag(problem):
  """z0's 6th channel: the item flagged 0 is solved in luminance only (its change has no
  chroma), the one flagged 1 as without the channel, each as if solved alone."""
  params, net, spec, x, target = problem
  where = np.zeros(x.shape[:3], np.float32)
  where[:, 6:20, 10:26] = 1.0
  z0 = pipeline.extra_channels(x, where, None, np.array([1.0, 0.0]))
  assert z0.shape == x.shape[:3] + (6,) and not z0[..., 4].any()

  def run(z):
    config = reconstruct.ReverseMapConfig(tv_weight=1e-5, linesearch="none", chunk=4,
                                          where=where_lib.WhereConfig(), chroma_scale=2)
    return reconstruct.ReverseMap(net, spec, config)(params, target, z, 8).images

  mixed, coloured = run(z0), run(z0[..., :4])
  np.testing.assert_allclose(mixed[0], coloured[0], atol=2e-4)
  chroma = lambda z, i: ((z[i] - x[i]) @ where_lib.YCC_FROM_RGB.T)[..., 1:]  # noqa: E731
  assert np.abs(chroma(coloured, 1)).max() > 1e-2  # with colour the solve does use chroma
  assert np.abs(chroma(mixed, 1)).max() < 1e-5
