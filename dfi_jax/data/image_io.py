"""Image files in and out: robust loading, atomic writes, PNG (resizing and fitting: `fitting`).

Images in memory are `[H, W, 3]` `float32` RGB in `[0, 1]`. Loading accepts anything Pillow
can decode and turns every failure into an `ImageError` whose one-line message names the file.
Everything written goes through `atomic_write_bytes` (temp file in the same directory, then
`os.replace`), so a crash or a full disk never leaves a half-written output behind. Its temp
files are named `.<name>.<random>.w<pid>@<host>.tmp`, so a later run can tell a dead writer's
leftovers (`stale_temp_writer`) from a live one's and from files that are not ours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import secrets
import socket
import stat
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# Pillow modes converted before reading as 8-bit L / LA / RGB / RGBA.
_CONVERT = {"1": "L", "P": "RGBA", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB",
            "CMYK": "RGB", "YCbCr": "RGB", "HSV": "RGB"}


class InputError(ValueError):
  """An input path that is missing, not a regular file, or whose name is not valid UTF-8."""


class ImageError(InputError):
  """An image file that is missing, unreadable, corrupt or too large to decode."""


def one_line(text: Any) -> str:
  return " ".join(str(text).split())


def _err(path: Any, what: str) -> ImageError:
  return ImageError(f"{os.fspath(path)}: {one_line(what)}")


def check_utf8_name(path: str | os.PathLike, label: str | None = None) -> None:
  """Refuses a path whose name is not valid UTF-8: it could not be written into the run's JSON,
  HTML or CSV, and would fail only after all the work."""
  text = os.fspath(path)
  try:
    os.fsencode(text).decode("utf-8")
  except UnicodeDecodeError:
    shown = os.fsencode(text).decode("utf-8", "backslashreplace")
    label = os.fsencode(label).decode("utf-8", "backslashreplace") if label else shown
    raise InputError(f"{label}: the name '{shown}' is not valid UTF-8; rename it") from None


_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def check_input_file(path: str | os.PathLike, label: str | None = None) -> None:
  """Refuses, before any work, an input file that would hang or fail late.

  A missing path, a directory, anything but a regular file (reading a named pipe blocks forever,
  a device may never end) and a name that is not valid UTF-8 raise `InputError` naming `label`
  (default: the path). Symbolic links are followed.
  """
  text = os.fspath(path)
  label = label or text
  if not str(text).strip():
    raise InputError(f"{label}: empty path; expected a file")
  check_utf8_name(text, label)
  try:
    mode = os.stat(text).st_mode
  except OSError as e:
    raise InputError(f"{label}: cannot open ({e.strerror}); expected a readable file") from None
  if stat.S_ISDIR(mode):
    raise InputError(f"{label}: is a directory; expected a file")
  kind = next((what for test, what in _KINDS if test(mode)), None)
  if kind or not stat.S_ISREG(mode):
    raise InputError(f"{label}: is {kind or 'not a regular file'}; expected a regular file")


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
      kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
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


def _host() -> str:
  return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


_TEMP = re.compile(r"^\..*\.w(\d+)@([A-Za-z0-9-]+)\.tmp$")


def stale_temp_writer(name: str) -> bool:
  """Whether `name` is an `atomic_write_bytes` temp file whose writer (a process on this host)
  is dead: only those may be removed; a live writer's, another host's and a user's stay."""
  found = _TEMP.match(name)
  if not found or found.group(2) != _host():
    return False
  pid = int(found.group(1))
  if pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except (OSError, OverflowError):  # EPERM: alive, another user's
    return False
  return False


def temp_path_beside(path: Path) -> Path:
  """A fresh temp name in `path`'s folder, named for this writer; the file is not made.

  Writers make the file *inside* their cleanup's `try` (exclusive create), so an exception at
  any point — Ctrl-C or SIGTERM turned into one by the CLIs — finds the name to remove.
  (`tempfile.mkstemp` returns the name only after making the file: a signal in between left
  a stray temp file.)
  """
  # The name is cut so the temp name stays under the file system's 255 bytes.
  return path.parent / f".{path.name[:80]}.{secrets.token_hex(5)}.w{os.getpid()}@{_host()}.tmp"


class LinkError(InputError):
  """An output path that is a symbolic link: a run never writes through a link it did not make."""


def refuse_link(path: str | os.PathLike) -> None:
  """Raises `LinkError` (one line) when `path` itself is a symbolic link (dangling or not)."""
  if os.path.islink(path):
    raise LinkError(f"{os.fspath(path)}: is a symbolic link (to {os.readlink(path)}); a run "
                    "never writes through a link it did not make: remove the link or use "
                    "another output folder")


def make_folder(path: str | os.PathLike) -> Path:
  """The output folder `path` (made with its parents if missing); `LinkError` if it is a
  symbolic link, so a run never writes into a folder elsewhere that it did not make."""
  path = Path(path)
  refuse_link(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except FileExistsError:
    raise InputError(f"{path}: is a file; expected a folder the run writes into") from None
  return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` via a temp file in the same directory and `os.replace`.

  The temp file is removed on any failure (including a full disk, Ctrl-C or SIGTERM turned into
  an exception), leaving any previous file intact. A `path` that is a symbolic link is refused
  (`LinkError`), never written through nor replaced. A new file gets mode 0644; a replaced file
  keeps its mode.
  """
  path = Path(path)
  refuse_link(path)
  try:
    mode = path.stat().st_mode & 0o7777
  except OSError:
    mode = 0o644
  tmp = temp_path_beside(path)
  try:
    with open(tmp, "xb") as f:  # exclusive: never another writer's file
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
  except FileExistsError:  # the random name is taken: not ours to remove
    raise
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """`atomic_write_bytes` of `text` encoded as UTF-8."""
  atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(obj: Any) -> Any:
  """`obj` as JSON holds it: str keys, lists for tuples, Python numbers for NumPy scalars,
  None for NaN/infinity, dicts for dataclasses."""
  if isinstance(obj, dict):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [jsonable(v) for v in obj]
  if isinstance(obj, (np.floating, float)):
    return float(obj) if np.isfinite(obj) else None
  if isinstance(obj, np.integer):
    return int(obj)
  if dataclasses.is_dataclass(obj):
    return jsonable(dataclasses.asdict(obj))
  return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes `obj` as indented, key-sorted JSON; NaN/infinity raise `ValueError`, nothing written."""
  try:
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False)
  except (ValueError, TypeError) as e:  # NaN / infinity, or an object JSON cannot hold.
    raise type(e)(f"{os.fspath(path)}: cannot write JSON: {e}") from e
  atomic_write_text(path, text + "\n")


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
  """Atomically writes `[H, W, 3]` float in `[0, 1]` (or `uint8`) as an 8-bit RGB PNG.

  No metadata or timestamps are written, so equal images give identical bytes. NaN or infinite
  values raise `ValueError` and write nothing.
  """
  atomic_write_bytes(path, png_bytes(image))


def png_bytes(image: np.ndarray) -> bytes:
  """`save_png`'s file content for `image` (the same bytes for equal images)."""
  buf = io.BytesIO()
  Image.fromarray(to_uint8(image)).save(buf, format="PNG", compress_level=6)
  return buf.getvalue()


def restore_file(path: str | os.PathLike, data: bytes) -> bool:
  """A resumed run's check of an output it kept: rewrites `path` (atomically) unless it holds
  exactly `data`; a missing, truncated or altered file is named on stderr. True if it wrote."""
  path = Path(path)
  refuse_link(path)
  try:
    found = None if not stat.S_ISREG(os.lstat(path).st_mode) else path.read_bytes()
    why = "damaged or changed" if found != data else ""
  except FileNotFoundError:
    why = "missing"
  if not why:
    return False
  print(f"warning: {path} was {why}; rewritten from the run's kept results", file=sys.stderr,
        flush=True)
  atomic_write_bytes(path, data)
  return True
