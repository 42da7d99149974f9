"""Image files in and out: robust loading, PNG (resizing and fitting: `fitting`; atomic writes
and input-file checks: `base/files.py`).

Images in memory are `[H, W, 3]` `float32` RGB in `[0, 1]`. Loading accepts anything Pillow
can decode and turns every failure into an `ImageError` whose one-line message names the file.
PNGs are written through `files.atomic_write_bytes`, so a crash or a full disk never leaves a
half-written output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
import sys
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from dfi_jax.base import files as files_lib

# Pillow modes converted before reading as 8-bit L / LA / RGB / RGBA.
_CONVERT = {"1": "L", "P": "RGBA", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB",
            "CMYK": "RGB", "YCbCr": "RGB", "HSV": "RGB"}


class ImageError(files_lib.InputError):
  """An image file that is missing, unreadable, corrupt or too large to decode."""


def _err(path: Any, what: str) -> ImageError:
  return ImageError(f"{os.fspath(path)}: {files_lib.one_line(what)}")


def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
  """`[H, W, C+1]` float with alpha last -> `[H, W, C]` composited over white."""
  alpha = rgba[..., -1:]
  return rgba[..., :-1] * alpha + (1.0 - alpha)


def _to_float_rgb(img: Image.Image, path: Any) -> np.ndarray:
  """A decoded Pillow image of any mode -> `[H, W, 3]` `float32` in `[0, 1]`."""
  if img.mode in _CONVERT:  # Palettes (with or without transparency) go through RGBA.
    img = img.convert(_CONVERT[img.mode])
  mode = img.mode
  if mode in ("L", "LA", "RGB", "RGBA"):
    x = np.asarray(img, dtype=np.float32) / 255.0
    if mode in ("LA", "RGBA"):
      x = _composite_over_white(x)
  elif mode.startswith("I;16"):
    x = np.asarray(img).astype(np.float32) / 65535.0
  elif mode == "I":
    v = np.asarray(img).astype(np.float64)
    # 16-bit data (how some formats decode) when it fits, else the non-negative int32 range.
    scale = 65535.0 if v.size and v.min() >= 0 and v.max() <= 65535 else 2147483647.0
    x = (v / scale).astype(np.float32)
  elif mode == "F":
    x = np.asarray(img, dtype=np.float32)
    if not np.all(np.isfinite(x)):
      raise _err(path, "float image contains NaN or infinite values; expected finite pixels")
    top = float(x.max())
    x = x / (1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0 if top <= 65535.0 else top)
  else:
    try:
      x = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (ValueError, OSError) as e:
      raise _err(path, f"cannot convert Pillow mode {mode!r} to RGB ({e})") from e
  if x.ndim == 2:
    x = np.repeat(x[..., None], 3, axis=-1)
  return np.clip(x, 0.0, 1.0).astype(np.float32)


def load_image(path: str | os.PathLike) -> np.ndarray:
  """`load_image_pinned` without the hash (see there for what is accepted)."""
  return load_image_pinned(path)[0]


def load_image_pinned(path: str | os.PathLike) -> tuple[np.ndarray, str]:
  """Reads any Pillow-readable image as RGB.

  The EXIF orientation is applied, so the array is upright as a viewer shows it. Greyscale is
  replicated to three channels; 16-bit data (`I;16`, and mode `I` holding values in
  `[0, 65535]`) is divided by 65535, other mode-`I` data by `2**31 - 1`, and float (`F`) data by
  1, 255 or 65535, whichever first bounds its maximum. Any alpha channel (RGBA, LA, palettes
  with transparency) is composited over white. Multi-frame files give their first frame (with
  a warning on stderr saying so).

  Args:
    path: the image file.

  Returns:
    `[H, W, 3]` `float32` in `[0, 1]`, and the sha256 of the very bytes decoded (the file is
    read once, so what a run records is what it used).

  Raises:
    ImageError: missing file, a directory, no read permission, an empty file, a file that is
      not an image, a truncated or corrupt image, or one over Pillow's `MAX_IMAGE_PIXELS`
      (a possible decompression bomb).
  """
  if os.path.isdir(path):
    raise _err(path, "is a directory; expected an image file")
  with contextlib.suppress(OSError):  # a missing file is named by open() below
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):  # open() on a named pipe would block forever
      kind = next((what for test, what in files_lib._KINDS if test(mode)), "not a regular file")
      raise _err(path, f"is {kind}; expected an image file")
  try:
    f = open(path, "rb")
  except OSError as e:  # "No such file or directory", "Permission denied", ...
    raise _err(path, f"cannot open ({e.strerror or e}); expected a readable image file") from e
  with f:
    try:
      data = f.read()
    except OSError as e:
      raise _err(path, f"cannot read ({e.strerror or e}); expected a readable image file") from e
  return _decode(io.BytesIO(data), path), hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, path: str | os.PathLike) -> np.ndarray:
  """`load_image` of bytes already read from `path` (which names it in errors): a file is
  decoded from the very bytes that are then hashed or copied."""
  return _decode(io.BytesIO(data), path)


def _decode(f, path: Any) -> np.ndarray:
  if f.seek(0, os.SEEK_END) == 0:
    raise _err(path, "empty file (0 bytes); expected an image")
  f.seek(0)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(f) as img:
        img.load()  # Full decode here, so truncation surfaces now and not later.
        if getattr(img, "n_frames", 1) > 1:
          print(f"warning: {os.fspath(path)}: {img.n_frames} frames (an animation or a "
                "multi-page file); only the first is read", file=sys.stderr, flush=True)
        img = ImageOps.exif_transpose(img)
        if img.width < 1 or img.height < 1:
          raise _err(path, f"image is {img.width}x{img.height}; expected at least 1x1 pixels")
        return _to_float_rgb(img, path)
  except ImageError:
    raise
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    found = re.search(r"\((\d+) pixels\)", str(e))
    count = f"{found.group(1)} pixels" if found else "too many pixels"
    raise _err(path, f"image has {count}, over Pillow's limit Image.MAX_IMAGE_PIXELS="
               f"{Image.MAX_IMAGE_PIXELS}; refusing a possible decompression bomb") from e
  except Image.UnidentifiedImageError as e:
    raise _err(path, "not an image Pillow can identify; expected an image file") from e
  except Exception as e:  # pylint: disable=broad-except
    # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error, EOFError, ... on
    # truncated or corrupt data; all of them mean the same thing to the caller.
    raise _err(path, f"truncated or corrupt image ({type(e).__name__}: {e})") from e


def as_float_image(image: np.ndarray, what: str = "image") -> np.ndarray:
  """`[H, W, 3]` float (checked finite) or `uint8` -> `float32`; `uint8` is divided by 255."""
  x = np.asarray(image)
  if x.ndim != 3 or x.shape[-1] != 3 or x.shape[0] < 1 or x.shape[1] < 1:
    raise ValueError(f"{what} has shape {x.shape}; expected [H, W, 3] with H, W >= 1")
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{what} contains NaN or infinite values; expected finite values in [0, 1]")
  return x


def to_uint8(image: np.ndarray) -> np.ndarray:
  """`[H, W, 3]` float in `[0, 1]` (or `uint8`, returned as a copy) -> `uint8`, rounded.

  Values outside `[0, 1]` are clipped; NaN or infinite values raise `ValueError`.
  """
  x = as_float_image(image)  # Checks the shape and finiteness.
  if np.asarray(image).dtype == np.uint8:
    return np.array(image, np.uint8)
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
  """Atomically writes `[H, W, 3]` float in `[0, 1]` (or `uint8`) as an 8-bit RGB PNG.

  No metadata or timestamps are written, so equal images give identical bytes. NaN or infinite
  values raise `ValueError` and write nothing.
  """
  files_lib.atomic_write_bytes(path, png_bytes(image))


def png_bytes(image: np.ndarray) -> bytes:
  """`save_png`'s file content for `image` (the same bytes for equal images)."""
  buf = io.BytesIO()
  Image.fromarray(to_uint8(image)).save(buf, format="PNG", compress_level=6)
  return buf.getvalue()


