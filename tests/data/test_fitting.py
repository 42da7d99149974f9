"""data/fitting.py: resizing, the square fitting of every image, and its inverse."""

import numpy as np
import pytest
from PIL import Image

from dfi_jax.data import fitting


def _check(x, shape):
  assert x.shape == shape and x.dtype == np.float32
  assert np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1


def test_extreme_aspect_fits_and_comes_back():
  x = np.tile(np.array([0, 128 / 255, 1], np.float32), (4000, 20, 1))
  sq, place = fitting.fit_square(x, 32)
  _check(sq, (32, 32, 3))
  assert (place.height, place.width, place.orig_height, place.orig_width) == (32, 1, 4000, 20)
  _check(fitting.unfit_square(sq, place), (4000, 20, 3))


def test_resize():
  x = np.full((10, 20, 3), 0.25, np.float32)
  y = fitting.resize(x, (7, 33))
  _check(y, (7, 33, 3))
  np.testing.assert_allclose(y, 0.25, atol=1e-5)


def test_fit_unfit_round_trip():
  yy, xx = np.mgrid[0:37, 0:91].astype(np.float32)
  x = np.stack([yy / 36, xx / 90, 0.5 + 0.3 * np.sin(xx / 9) * np.cos(yy / 7)], -1)
  sq, place = fitting.fit_square(x, 128)
  _check(sq, (128, 128, 3))
  assert (place.width, place.left, place.orig_height, place.orig_width) == (128, 0, 37, 91)
  assert place.top == (128 - place.height) // 2 and place.height == round(37 * 128 / 91)
  back = fitting.unfit_square(sq, place)
  _check(back, (37, 91, 3))
  assert np.abs(back - x).mean() < 0.01 and np.abs(back - x).max() < 0.1


def test_fit_square_pads_with_the_border_colour_crops_and_stretches():
  wide = np.ones((30, 40, 3), np.float32)
  wide[10:20, 5:35] = 0.0
  square, place = fitting.fit_square(wide, 32, "pad", pad="border")
  assert square.shape == (32, 32, 3) and place == (4, 0, 24, 32, 30, 40)
  assert square[0].min() > 0.99 and square[-1].min() > 0.99  # white, not the mean colour
  assert square[16, 16].max() < 0.05
  mean = fitting.fit_square(wide, 32, "pad")[0]  # the mean colour: grey bands
  np.testing.assert_allclose(mean[0, 0], mean[4:28].mean((0, 1)), atol=1e-6)
  cropped, place = fitting.fit_square(wide, 32, "crop")
  assert cropped[16, 0].max() < 0.05 and place == (0, 0, 32, 32, 30, 30)  # keeps the dark band
  np.testing.assert_allclose(cropped, fitting.resize(wide[:, 5:35], (32, 32)))
  np.testing.assert_allclose(fitting.fit_square(wide, 32, "stretch")[0],
                             fitting.resize(wide, (32, 32)))
  with pytest.raises(ValueError, match="fit 'fill'"):
    fitting.fit_square(wide, 32, "fill")


def test_official_resample_is_8_bit_bicubic_when_shrinking_and_lanczos_when_enlarging():
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (40, 50, 3), np.uint8)
  for size, method in ((20, Image.Resampling.BICUBIC), (60, Image.Resampling.LANCZOS)):
    want = np.asarray(Image.fromarray(pixels).resize((size, size), method)) / np.float32(255)
    got = fitting.fit_square(pixels, size, "stretch", resample="official")[0]
    np.testing.assert_array_equal(got, want.astype(np.float32))
