"""Tests for dfi_jax.data.image_io: every input is made here, in tmp_path, with Pillow and NumPy."""

import errno
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.data.image_io import ImageError, load_image


def _check(x, shape):
  assert x.shape == shape and x.dtype == np.float32
  assert np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0


def _raises_naming(path):
  """pytest.raises(ImageError) that also checks the message is one line naming the file."""
  class _Ctx:
    def __enter__(self):
      self.ctx = pytest.raises(ImageError)
      self.info = self.ctx.__enter__()
      return self.info

    def __exit__(self, *exc):
      out = self.ctx.__exit__(*exc)
      msg = str(self.info.value)
      assert Path(path).name in msg and "\n" not in msg, msg
      return out
  return _Ctx()


def test_rgba_non_square_composited_over_white(tmp_path):
  a = np.zeros((17, 30, 4), np.uint8)
  a[:, :10] = (255, 0, 0, 255)      # opaque red
  a[:, 10:20] = (0, 0, 0, 0)        # fully transparent -> white
  a[:, 20:] = (0, 0, 0, 128)        # half-transparent black -> mid grey
  p = tmp_path / "rgba.png"
  Image.fromarray(a).save(p)
  x = load_image(p)
  _check(x, (17, 30, 3))
  np.testing.assert_allclose(x[0, 0], [1, 0, 0])
  np.testing.assert_allclose(x[0, 15], [1, 1, 1])
  np.testing.assert_allclose(x[0, 25], [127 / 255] * 3, atol=1e-6)


def test_greyscale_jpeg(tmp_path):
  p = tmp_path / "grey.jpg"
  Image.new("L", (21, 13), 200).save(p, quality=95)
  x = load_image(p)
  _check(x, (13, 21, 3))
  np.testing.assert_allclose(x, 200 / 255, atol=2 / 255)


def test_16bit_greyscale_png_scales_full_range(tmp_path):
  p = tmp_path / "grey16.png"
  a = np.array([[0, 32768, 65535], [1000, 50000, 65535]], np.uint16)
  Image.fromarray(a).save(p)
  x = load_image(p)
  _check(x, (2, 3, 3))
  np.testing.assert_allclose(x[..., 0], a / 65535.0, atol=1e-6)  # not clipped at 255
  assert x[0, 1, 0] == pytest.approx(0.5, abs=1e-3)


def test_float_tiff(tmp_path):
  p = tmp_path / "float.tif"
  Image.fromarray(np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)).save(p)
  np.testing.assert_allclose(load_image(p)[..., 1], [[0, 0.25], [0.5, 1]], atol=1e-6)


def test_cmyk_jpeg(tmp_path):
  p = tmp_path / "cmyk.jpg"
  im = Image.new("CMYK", (30, 20), (0, 0, 0, 0))
  im.paste((0, 255, 255, 0), (0, 0, 10, 20))  # no cyan, full magenta+yellow -> red
  im.save(p, quality=95)
  x = load_image(p)
  _check(x, (20, 30, 3))
  assert x[:, 15:].mean() > 0.95
  np.testing.assert_allclose(x[10, 3], [1, 0, 0], atol=0.1)


@pytest.mark.parametrize("transparency", [True, False])
def test_palette_png(tmp_path, transparency):
  p = tmp_path / "palette.png"
  im = Image.new("P", (8, 6), 0)
  im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
  im.paste(1, (0, 0, 4, 6))
  im.save(p, **({"transparency": 0} if transparency else {}))
  x = load_image(p)
  _check(x, (6, 8, 3))
  np.testing.assert_allclose(x[0, 0], [1, 0, 0])
  np.testing.assert_allclose(x[0, 7], [1, 1, 1] if transparency else [0, 0, 0])


def test_tiny_and_extreme_aspect(tmp_path):
  p1, p2 = tmp_path / "one.png", tmp_path / "long.png"
  Image.new("RGB", (1, 1), (10, 20, 30)).save(p1)
  Image.new("RGB", (20, 4000), (0, 128, 255)).save(p2)
  _check(load_image(p1), (1, 1, 3))
  x = load_image(p2)
  _check(x, (4000, 20, 3))


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_applied(tmp_path, orientation):
  a = np.full((20, 40, 3), 255, np.uint8)
  a[:8, :8] = (255, 0, 0)  # red block at the stored top-left
  exif = Image.Exif()
  exif[0x0112] = orientation
  p = tmp_path / f"rot{orientation}.jpg"
  Image.fromarray(a).save(p, exif=exif, quality=95)
  x = load_image(p)
  _check(x, (40, 20, 3))
  # 6: displayed rotated 90 deg clockwise, so the block ends top-right; 8: bottom-left.
  corner = x[:4, -4:] if orientation == 6 else x[-4:, :4]
  np.testing.assert_allclose(corner.mean(axis=(0, 1)), [1, 0, 0], atol=0.1)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
  rng = np.random.default_rng(0)
  p = tmp_path / f"cut.{fmt.lower()}"
  Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p, format=fmt)
  data = p.read_bytes()
  p.write_bytes(data[: len(data) // 2])
  with _raises_naming(p):
    load_image(p)


def test_not_an_image_empty_directory_missing(tmp_path):
  text = tmp_path / "notes.png"
  text.write_text("this is not a PNG\n")
  empty = tmp_path / "empty.jpg"
  empty.write_bytes(b"")
  folder = tmp_path / "folder.png"
  folder.mkdir()
  missing = tmp_path / "missing.png"
  for p, word in [(text, "not an image"), (empty, "empty"), (folder, "directory"),
                  (missing, "no such file")]:
    with _raises_naming(p) as info:
      load_image(p)
    assert word in str(info.value).lower()


def test_unreadable_file(tmp_path):
  p = tmp_path / "secret.png"
  Image.new("RGB", (3, 2)).save(p)
  p.chmod(0)
  try:
    if os.access(p, os.R_OK):  # root ignores permissions: the file simply loads.
      _check(load_image(p), (2, 3, 3))
    else:
      with _raises_naming(p) as info:
        load_image(p)
      assert "permission" in str(info.value).lower()
  finally:
    p.chmod(0o644)


def test_path_with_spaces_and_non_ascii(tmp_path):
  d = tmp_path / "dir with spaces ü"
  d.mkdir()
  p = d / "bïld 画像 (1).png"
  Image.new("RGB", (5, 4), (255, 255, 255)).save(p)
  _check(load_image(str(p)), (4, 5, 3))
  with _raises_naming(d / "nö such.png"):
    load_image(d / "nö such.png")


@pytest.mark.parametrize("size", [(20, 20), (15, 10)])  # over 2x the limit: error; over 1x: warning
def test_decompression_bomb(tmp_path, monkeypatch, size):
  p = tmp_path / "bomb.png"
  Image.new("RGB", size).save(p)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
  with _raises_naming(p) as info:
    load_image(p)
  msg = str(info.value)
  assert str(size[0] * size[1]) in msg and "100" in msg


def test_to_uint8():
  x = np.array([[[0.0, 0.5, 1.0], [-1.0, 2.0, 0.2]]], np.float32)
  np.testing.assert_array_equal(image_io.to_uint8(x), [[[0, 128, 255], [0, 255, 51]]])
  for bad in (np.nan, np.inf, -np.inf):
    y = x.copy()
    y[0, 0, 0] = bad
    with pytest.raises(ValueError, match="NaN"):
      image_io.to_uint8(y)


def test_save_png_round_trip_and_deterministic(tmp_path):
  rng = np.random.default_rng(1)
  x = rng.random((9, 11, 3)).astype(np.float32)
  a, b = tmp_path / "a.png", tmp_path / "b.png"
  image_io.save_png(a, x)
  image_io.save_png(b, x)
  assert a.read_bytes() == b.read_bytes()
  np.testing.assert_allclose(load_image(a), x, atol=0.5 / 255 + 1e-6)
  with pytest.raises(ValueError):
    image_io.save_png(tmp_path / "nan.png", np.full((2, 2, 3), np.nan, np.float32))
  assert not (tmp_path / "nan.png").exists()


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_save_png_atomic_on_enospc(tmp_path, monkeypatch, where):
  p = tmp_path / "out.png"
  image_io.save_png(p, np.zeros((4, 4, 3), np.float32))
  before = p.read_bytes()

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(image_io.os, where, full_disk)
  with pytest.raises(OSError) as info:
    image_io.save_png(p, np.ones((8, 8, 3), np.float32))
  monkeypatch.undo()
  assert info.value.errno == errno.ENOSPC
  assert p.read_bytes() == before
  assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_atomic_write_json(tmp_path):
  p = tmp_path / "meta.json"
  files_lib.atomic_write_json(p, {"b": 1, "a": [1.5, "x"]})
  assert json.loads(p.read_text()) == {"a": [1.5, "x"], "b": 1}
  assert p.read_text().index('"a"') < p.read_text().index('"b"')
  with pytest.raises(ValueError, match="meta2.json"):
    files_lib.atomic_write_json(tmp_path / "meta2.json", {"loss": float("nan")})
  assert sorted(os.listdir(tmp_path)) == ["meta.json"]


# Headers of common formats, two of them complete (PPM/PGM) so some inputs do decode.
_MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"P6\n",
          b"P6\n2 3\n255\n", b"P5\n3 2\n65535\n"]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_MAGIC), st.binary(max_size=600))
def test_random_bytes_never_crash(magic, body):
  with tempfile.TemporaryDirectory() as d, mock.patch.object(Image, "MAX_IMAGE_PIXELS", 10**6):
    p = Path(d) / "random.img"
    p.write_bytes(magic + body)
    try:
      x = load_image(p)
    except ImageError as e:
      assert "random.img" in str(e)
    else:
      assert x.ndim == 3 and x.shape[2] == 3 and x.dtype == np.float32
      assert np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1
