"""Resizing, and the one way images are made square (`fit_square`) and put back
(`unfit_square`). Images are `[H, W, 3]` `float32` RGB in `[0, 1]` (`uint8` accepted)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from dfi_jax.data.image_io import as_float_image, to_uint8

_LANCZOS = Image.Resampling.LANCZOS
_BICUBIC = Image.Resampling.BICUBIC


class Placement(NamedTuple):
  """Where `fit_square` put the resized content inside the square (all in pixels)."""
  top: int
  left: int
  height: int
  width: int
  orig_height: int
  orig_width: int



RESAMPLES = ("lanczos", "official")


def resize(image: np.ndarray, size: tuple[int, int], resample: str = "lanczos") -> np.ndarray:
  """Resizes `[H, W, 3]` to `size = (height, width)`: `float32` in `[0, 1]`.

  `lanczos`: each channel resampled by Pillow in 32-bit float (`F` mode), antialiased when
  shrinking. `official`: the official code's `imageutils.resize` on the 8-bit image: bicubic
  when shrinking both ways, Lanczos otherwise.
  """
  if resample == "official":
    x = to_uint8(image)
    h, w = (int(v) for v in size)
    if (h, w) != x.shape[:2]:
      method = _BICUBIC if h < x.shape[0] and w < x.shape[1] else _LANCZOS
      x = np.asarray(Image.fromarray(np.ascontiguousarray(x)).resize((w, h), method))
    return x.astype(np.float32) / 255.0
  if resample != "lanczos":
    raise ValueError(f"resample {resample!r}; expected one of {RESAMPLES}")
  x = as_float_image(image)
  h, w = (int(s) for s in size)
  if h < 1 or w < 1:
    raise ValueError(f"resize size {tuple(size)}; expected (height, width) >= 1")
  if (h, w) == x.shape[:2]:
    return np.clip(x, 0.0, 1.0)
  chans = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c])).resize((w, h), _LANCZOS))
           for c in range(3)]
  return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


FITS = ("pad", "crop", "stretch")
PADS = ("mean", "border")


def fit_square(image: np.ndarray, size: int, fit: str = "pad", pad: str = "mean",
               resample: str = "lanczos") -> tuple[np.ndarray, Placement]:
  """Fits `[H, W, 3]` into a `size x size` square: the one way images are made square.

  Args:
    fit: `pad`: the content resized to fit (aspect kept), centred, and padded with `pad`'s
      colour; `crop`: the centre square, resized; `stretch`: resized to the square.
    pad: `mean`: the resized content's per-channel mean (neutral for feature statistics, unlike
      reflections, which add mirrored structure); `border`: the median of the image's border
      pixels (keeps a catalogue photo's white background white).
    resample: see `resize`.

  Returns:
    The `[size, size, 3]` `float32` square and its `Placement` (where the content lies, for
    `unfit_square`; `crop`: the whole square, from the centre square of the image).
  """
  x = as_float_image(image)
  if size < 1:
    raise ValueError(f"fit_square size {size}; expected >= 1")
  if fit not in FITS or pad not in PADS:
    raise ValueError(f"fit {fit!r}, pad {pad!r}; expected one of {FITS}, {PADS}")
  oh, ow = x.shape[:2]
  if fit == "crop":
    side = min(oh, ow)
    top, left = (oh - side) // 2, (ow - side) // 2
    x, oh, ow = x[top:top + side, left:left + side], side, side
  if fit != "pad":
    return resize(x, (size, size), resample), Placement(0, 0, size, size, oh, ow)
  scale = size / max(oh, ow)
  h, w = min(size, max(1, round(oh * scale))), min(size, max(1, round(ow * scale)))
  content = resize(x, (h, w), resample)
  top, left = (size - h) // 2, (size - w) // 2
  square = np.empty((size, size, 3), np.float32)
  if pad == "mean":
    square[...] = content.mean(axis=(0, 1))
  else:
    square[...] = np.median(np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]]), axis=0)
  square[top:top + h, left:left + w] = content
  return square, Placement(top, left, h, w, oh, ow)


def unfit_square(square: np.ndarray, placement: Placement) -> np.ndarray:
  """Crops the content of a `fit_square` square back out at the original size, `[H, W, 3]`."""
  x = as_float_image(square, "square")
  p = Placement(*placement)
  if p.top < 0 or p.left < 0 or p.top + p.height > x.shape[0] or p.left + p.width > x.shape[1]:
    raise ValueError(f"square of shape {x.shape} does not contain placement {p}")
  content = x[p.top:p.top + p.height, p.left:p.left + p.width]
  return resize(content, (p.orig_height, p.orig_width))
