"""The crops the official code and its data sources used, and the resize to the network's size.

A `Crop` is a box in the stored image's pixels. Defaults:

* LFW (250×250 originals): the centre 150×150 box, which is the crop of the AEGAN LFW images the
  official demo1 read (`lfw_aegan`: Larsen et al. cut `crop_size=150` from the centre of the
  250×250 image, after a 68-landmark similarity alignment that tfds's unaligned `lfw.tgz`
  cannot reproduce). The official code then upscaled to a short side of 200.
* CelebA aligned (218×178): rows 40:188, columns 15:163, the 148×148 box of the same authors.

The resize follows the official `imageutils.resize`: Lanczos when enlarging, bicubic when
shrinking, on 8-bit images (`fitting.fit_square`'s `stretch` with `resample="official"`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from dfi_jax.data import fitting


class Crop(NamedTuple):
  """A box `[top, top + height) × [left, left + width)` in source pixels."""
  top: int
  left: int
  height: int
  width: int


LFW_CROP = Crop(50, 50, 150, 150)
CELEB_A_CROP = Crop(40, 15, 148, 148)
NO_CROP = Crop(0, 0, 0, 0)  # height/width 0: the whole image


def parse_crop(value: Sequence[int] | None, default: Crop) -> Crop:
  """`config.crop`: () or None for `default`, (0, 0, 0, 0) for none, else (top, left, h, w)."""
  if value is None or len(value) == 0:
    return default
  if len(value) != 4 or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in value):
    raise ValueError(f"--config.crop={tuple(value)!r}: expected (top, left, height, width) of "
                     "non-negative integers, (0, 0, 0, 0) for the whole image, or () for "
                     f"the dataset's default {tuple(default)}")
  return Crop(*(int(v) for v in value))


def crop_and_resize(image: np.ndarray, crop: Crop, size: int, name: str = "image") -> np.ndarray:
  """`[H, W, 3]` uint8 (or float in [0, 1]) -> `[size, size, 3]` float32 in [0, 1].

  The box must lie inside the image; a non-square box is stretched to the square.
  """
  x = np.asarray(image)
  if x.dtype != np.uint8:
    x = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
  if x.ndim == 2:
    x = np.repeat(x[..., None], 3, axis=-1)
  if x.ndim != 3 or x.shape[-1] != 3:
    raise ValueError(f"{name}: expected an [H, W, 3] image, got shape {x.shape}")
  h, w = x.shape[:2]
  if crop.height and crop.width:
    if crop.top + crop.height > h or crop.left + crop.width > w:
      raise ValueError(f"{name}: crop {tuple(crop)} (top, left, height, width) does not fit "
                       f"in the {h}×{w} image; set --config.crop")
    x = x[crop.top:crop.top + crop.height, crop.left:crop.left + crop.width]
  return fitting.fit_square(x, size, "stretch", resample="official")[0]
