"""dfi_jax.eval.metrics on hand-made arrays whose answers are known without the code."""

import warnings

import numpy as np
import pytest

from dfi_jax.eval import metrics

H, W = 6, 5


def _images():
  """x, its counterfactual (x + 0.4 inside rows 1-2 only) and that region's mask."""
  rng = np.random.default_rng(0)
  x = rng.uniform(0.2, 0.6, (H, W, 3)).astype(np.float32)
  mask = np.zeros((H, W), bool)
  mask[1:3] = True
  x_cf = x.copy()
  x_cf[mask] += 0.4
  return x, x_cf, mask


def test_r_is_zero_for_the_counterfactual_and_one_for_the_input():
  x, x_cf, mask = _images()
  assert metrics.counterfactual_ratio(x_cf, x, x_cf, mask) == 0.0
  assert metrics.counterfactual_ratio(x, x, x_cf, mask) == pytest.approx(1.0)
  # Half way there: r = ½; overshooting by the whole change again: r = 1.
  assert metrics.counterfactual_ratio((x + x_cf) / 2, x, x_cf, mask) == pytest.approx(0.5)
  assert metrics.counterfactual_ratio(2 * x_cf - x, x, x_cf, mask) == pytest.approx(1.0)
  # An L2 ratio, not L1: one pixel off by 0.4·√2 in one channel of a 10-pixel region.
  edit = x_cf.copy()
  edit[1, 0, 0] += 0.4 * np.sqrt(2)
  want = np.sqrt(2 * 0.16) / np.sqrt(10 * 3 * 0.16)
  assert metrics.counterfactual_ratio(edit, x, x_cf, mask) == pytest.approx(want, rel=1e-5)


def test_r_ignores_pixels_outside_the_mask():
  x, x_cf, mask = _images()
  edit = (x + x_cf) / 2
  noisy = edit.copy()
  noisy[~mask] = np.random.default_rng(1).uniform(0, 1, (int((~mask).sum()), 3))
  assert metrics.counterfactual_ratio(noisy, x, x_cf, mask) == pytest.approx(0.5)
  # ... and the counterfactual's own pixels outside the mask do not count either.
  cf_noisy = x_cf.copy()
  cf_noisy[~mask] = 0.0
  assert metrics.counterfactual_ratio(edit, x, cf_noisy, mask) == pytest.approx(0.5)


def test_r_is_nan_when_input_and_counterfactual_agree_in_the_mask():
  x, _, mask = _images()
  assert np.isnan(metrics.counterfactual_ratio(x + 0.1, x, x, mask))
  assert np.isnan(metrics.counterfactual_ratio(x, x, x + 0.3, np.zeros((H, W), bool)))


def test_outside_change_is_the_mean_absolute_change_outside_the_mask():
  x, _, mask = _images()
  edit = x.copy()
  edit[mask] += 0.9  # inside: ignored
  assert metrics.outside_change(edit, x, mask) == 0.0
  edit[4, 2] -= np.float32(0.6)  # one outside pixel, all three channels
  want = 3 * 0.6 / (int((~mask).sum()) * 3)
  assert metrics.outside_change(edit, x, mask) == pytest.approx(want, rel=1e-5)
  assert metrics.outside_change(edit, x, np.ones((H, W), bool)) == 0.0  # nothing outside


def test_pixel_baseline_moves_by_delta_times_the_neighbour_mean_difference_and_clips():
  bank = np.zeros((5, H, W, 3), np.float32)
  bank[[0, 1]] = 0.1  # sources: mean 0.1
  bank[2] = 0.3
  bank[3] = 0.5  # targets 2, 3: mean 0.4
  bank[4] = 1.0  # used by neither
  x = np.full((H, W, 3), 0.5, np.float32)
  x[0, 0] = 0.95
  x[5, 4] = 0.02
  out = metrics.pixel_baseline(x, bank, np.array([0, 1]), np.array([2, 3]), 0.5)
  assert out.dtype == np.float32 and out.shape == (H, W, 3)
  np.testing.assert_allclose(out[3, 3], 0.65, rtol=1e-6)  # 0.5 + 0.5·(0.4 − 0.1)
  assert (out[0, 0] == 1.0).all()  # 0.95 + 0.15 clipped at 1
  down = metrics.pixel_baseline(x, bank, np.array([2, 3]), np.array([0, 1]), 0.5)
  np.testing.assert_allclose(down[3, 3], 0.35, rtol=1e-6)
  assert (down[5, 4] == 0.0).all()  # 0.02 − 0.15 clipped at 0
  np.testing.assert_array_equal(
      metrics.pixel_baseline(x, bank, np.array([0, 1]), np.array([2, 3]), 0.0), x)


def test_summaries_average_each_attribute_and_skip_nan_items():
  rows = [
      dict(image="a", attribute="smiling", r=0.2, outside=0.01, baseline_delta=0.5),
      dict(image="b", attribute="smiling", r=float("nan"), outside=0.03, baseline_delta=1.0),
      dict(image="c", attribute="smiling", r=0.6, outside=0.05, baseline_delta=0.5),
      dict(image="a", attribute="older", r=1.5, outside=0.2, baseline_delta=0.25),
  ]
  summary = metrics.summarise(rows, ["older", "smiling", "eyeglasses"])
  assert list(summary) == ["older", "smiling"]  # no rows, no entry
  assert summary["smiling"] == pytest.approx(dict(r=0.4, outside=0.03, count=3))
  assert summary["older"] == pytest.approx(dict(r=1.5, outside=0.2, count=1))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # numpy: mean of an all-NaN slice
    only_nan = metrics.summarise([dict(image="x", attribute="older", r=float("nan"),
                                       outside=0.1)], ["older"])
  assert np.isnan(only_nan["older"]["r"]) and only_nan["older"]["count"] == 1
  table = metrics.table_markdown(summary, [("r", "DFI r"), ("outside", "outside")])
  assert table.splitlines() == ["| attribute | DFI r | outside |", "|---|---|---|",
                                "| older | 1.500 | 0.200 |", "| smiling | 0.400 | 0.030 |"]
