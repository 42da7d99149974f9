"""Image files in and out: robust loading, resizing, square fitting, grids, atomic writes, HTML.

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
import html
import io
import json
import os
import re
import secrets
import socket
import stat
import urllib.parse
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

_LANCZOS = Image.Resampling.LANCZOS
# Pillow modes converted before reading as 8-bit L / LA / RGB / RGBA.
_CONVERT = {"1": "L", "P": "RGBA", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB",
            "CMYK": "RGB", "YCbCr": "RGB", "HSV": "RGB"}


class InputError(ValueError):
  """An input path that is missing, not a regular file, or whose name is not valid UTF-8."""


class ImageError(InputError):
  """An image file that is missing, unreadable, corrupt or too large to decode."""


class Placement(NamedTuple):
  """Where `fit_square` put the resized content inside the square (all in pixels)."""
  top: int
  left: int
  height: int
  width: int
  orig_height: int
  orig_width: int


def _one_line(text: Any) -> str:
  return " ".join(str(text).split())


def _err(path: Any, what: str) -> ImageError:
  return ImageError(f"{os.fspath(path)}: {_one_line(what)}")


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
  """Reads any Pillow-readable image as RGB.

  The EXIF orientation is applied, so the array is upright as a viewer shows it. Greyscale is
  replicated to three channels; 16-bit data (`I;16`, and mode `I` holding values in
  `[0, 65535]`) is divided by 65535, other mode-`I` data by `2**31 - 1`, and float (`F`) data by
  1, 255 or 65535, whichever first bounds its maximum. Any alpha channel (RGBA, LA, palettes
  with transparency) is composited over white. Multi-frame files give their first frame.

  Args:
    path: the image file.

  Returns:
    `[H, W, 3]` `float32` in `[0, 1]`.

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
    if os.fstat(f.fileno()).st_size == 0:
      raise _err(path, "empty file (0 bytes); expected an image")
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(f) as img:
          img.load()  # Full decode here, so truncation surfaces now and not later.
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


def _as_float_image(image: np.ndarray, what: str = "image") -> np.ndarray:
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
  x = _as_float_image(image)  # Checks the shape and finiteness.
  if np.asarray(image).dtype == np.uint8:
    return np.array(image, np.uint8)
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Lanczos resize of `[H, W, 3]` float to `size = (height, width)`; `float32` in `[0, 1]`.

  Each channel is resampled by Pillow in 32-bit float (`F` mode), antialiased when shrinking.
  """
  x = _as_float_image(image)
  h, w = (int(s) for s in size)
  if h < 1 or w < 1:
    raise ValueError(f"resize size {tuple(size)}; expected (height, width) >= 1")
  if (h, w) == x.shape[:2]:
    return np.clip(x, 0.0, 1.0)
  chans = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c])).resize((w, h), _LANCZOS))
           for c in range(3)]
  return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


def fit_square(image: np.ndarray, size: int) -> tuple[np.ndarray, Placement]:
  """Resizes `image` to fit a `size x size` square, keeping its aspect ratio, and pads it.

  The content is centred; the padding is the per-channel mean colour of the resized content
  (neutral for feature statistics, unlike reflections, which add mirrored structure).

  Returns:
    The `[size, size, 3]` `float32` square and its `Placement`, for `unfit_square`.
  """
  x = _as_float_image(image)
  if size < 1:
    raise ValueError(f"fit_square size {size}; expected >= 1")
  oh, ow = x.shape[:2]
  scale = size / max(oh, ow)
  h, w = min(size, max(1, round(oh * scale))), min(size, max(1, round(ow * scale)))
  content = resize(x, (h, w))
  top, left = (size - h) // 2, (size - w) // 2
  square = np.empty((size, size, 3), np.float32)
  square[...] = content.mean(axis=(0, 1))
  square[top:top + h, left:left + w] = content
  return square, Placement(top, left, h, w, oh, ow)


def unfit_square(square: np.ndarray, placement: Placement) -> np.ndarray:
  """Crops the content of a `fit_square` square back out at the original size, `[H, W, 3]`."""
  x = _as_float_image(square, "square")
  p = Placement(*placement)
  if p.top < 0 or p.left < 0 or p.top + p.height > x.shape[0] or p.left + p.width > x.shape[1]:
    raise ValueError(f"square of shape {x.shape} does not contain placement {p}")
  content = x[p.top:p.top + p.height, p.left:p.left + p.width]
  return resize(content, (p.orig_height, p.orig_width))


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` via a temp file in the same directory and `os.replace`.

  The temp file is removed on any failure (including a full disk, Ctrl-C or SIGTERM turned into
  an exception), leaving any previous file intact. A new file gets mode 0644; a replaced file
  keeps its mode.
  """
  path = Path(path)
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
  buf = io.BytesIO()
  Image.fromarray(to_uint8(image)).save(buf, format="PNG", compress_level=6)
  atomic_write_bytes(path, buf.getvalue())


def make_grid(rows: list[list[np.ndarray]], pad: int = 2, background: float = 1.0) -> np.ndarray:
  """Tiles equal-size `[h, w, 3]` images into one `float32` image.

  `pad` pixels of `background` surround every tile (outer border included). Rows may differ in
  length; missing tiles are `background`. The result is
  `[pad + n_rows * (h + pad), pad + n_cols * (w + pad), 3]`, `n_cols` the longest row.
  """
  tiles = [[_as_float_image(t, f"tile [{i}][{j}]") for j, t in enumerate(r)]
           for i, r in enumerate(rows)]
  shapes = {t.shape for r in tiles for t in r}
  if len(shapes) != 1:
    raise ValueError(f"grid tiles have shapes {sorted(shapes)}; expected one shared [h, w, 3]")
  if pad < 0:
    raise ValueError(f"grid pad {pad}; expected >= 0")
  h, w, _ = shapes.pop()
  n_cols = max(len(r) for r in tiles)
  grid = np.full((pad + len(tiles) * (h + pad), pad + n_cols * (w + pad), 3), background,
                 np.float32)
  for i, r in enumerate(tiles):
    for j, t in enumerate(r):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = t
  return grid


def _label_fits(draw: ImageDraw.ImageDraw, font: Any, text: str,
                max_w: int) -> tuple[str, int, int]:
  """`text` made drawable by `font` and shortened with '...' to fit `max_w`; (text, w, h)."""
  text = _one_line(text)
  try:
    draw.textbbox((0, 0), text, font=font)
  except (UnicodeError, ValueError):
    text = text.encode("ascii", "replace").decode("ascii")
  short = text
  while True:
    l, t, r, b = draw.textbbox((0, 0), short, font=font)
    if r - l <= max_w or not short:
      return short, r - l, b - t
    text = text[:-1]
    short = text + "..." if text else ""


def save_grid(path: str | os.PathLike, rows: list[list[np.ndarray]],
              row_labels: list[str] | None = None, col_labels: list[str] | None = None,
              pad: int = 2) -> None:
  """`make_grid` on white with optional labels in a header row / left column, saved as PNG.

  Labels use Pillow's default font; column labels longer than a tile are shortened with '...'.
  """
  grid = to_uint8(make_grid(rows, pad=pad, background=1.0))
  h, w = np.asarray(next(t for r in rows for t in r)).shape[:2]
  n_cols = max(len(r) for r in rows)
  if row_labels is not None and len(row_labels) != len(rows):
    raise ValueError(f"{os.fspath(path)}: {len(row_labels)} row labels for {len(rows)} rows")
  if col_labels is not None and len(col_labels) != n_cols:
    raise ValueError(f"{os.fspath(path)}: {len(col_labels)} column labels for {n_cols} columns")
  font = ImageFont.load_default()
  probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  margin = 4
  rlab = [_label_fits(probe, font, s, 10**6) for s in row_labels or []]
  clab = [_label_fits(probe, font, s, w) for s in col_labels or []]
  left = max((lw for _, lw, _ in rlab), default=-2 * margin) + 2 * margin
  head = max((lh for _, _, lh in clab), default=-2 * margin) + 2 * margin
  canvas = Image.new("RGB", (left + grid.shape[1], head + grid.shape[0]), (255, 255, 255))
  canvas.paste(Image.fromarray(grid), (left, head))
  draw = ImageDraw.Draw(canvas)
  for j, (text, tw, _) in enumerate(clab):
    draw.text((left + pad + j * (w + pad) + (w - tw) // 2, margin), text, fill=(0, 0, 0), font=font)
  for i, (text, _, th) in enumerate(rlab):
    draw.text((margin, head + pad + i * (h + pad) + (h - th) // 2), text, fill=(0, 0, 0), font=font)
  save_png(path, np.asarray(canvas))


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em}
p{white-space:pre-wrap}.figs{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}
img{max-width:100%;image-rendering:pixelated}figcaption{font-size:90%;color:#333}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .6em}"""
_SECTION_KEYS = {"heading", "text", "figures", "table"}


def _esc(value: Any) -> str:
  return html.escape(str(value), quote=True)


def write_index_html(path: str | os.PathLike, title: str, sections: list[dict]) -> None:
  """Atomically writes a self-contained static HTML page (inline CSS, no JavaScript).

  Args:
    path: the `.html` file.
    title: page title and top heading.
    sections: `{"heading": str, "text": str (optional), "figures": [{"src": relative path,
      "caption": str}] (optional), "table": {"columns": [...], "rows": [[...]]} (optional)}`.
      All text is HTML-escaped; `src` is percent-encoded as a relative URL; cells use `str()`.
  """
  out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
         f"<h1>{_esc(title)}</h1>"]
  for k, sec in enumerate(sections):
    unknown = set(sec) - _SECTION_KEYS
    if "heading" not in sec or unknown:
      raise ValueError(f"{os.fspath(path)}: section {k} has keys {sorted(sec)}; expected "
                       f"'heading' and optionally {sorted(_SECTION_KEYS - {'heading'})}")
    out.append(f"<section><h2>{_esc(sec['heading'])}</h2>")
    if sec.get("text"):
      out.append(f"<p>{_esc(sec['text'])}</p>")
    if sec.get("figures"):
      out.append('<div class="figs">')
      for fig in sec["figures"]:
        src, cap = _esc(urllib.parse.quote(str(fig["src"]))), _esc(fig.get("caption", ""))
        out.append(f'<figure><a href="{src}"><img src="{src}" alt="{cap}"></a>'
                   f"<figcaption>{cap}</figcaption></figure>")
      out.append("</div>")
    if sec.get("table"):
      table = sec["table"]
      out.append("<table><thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in table["columns"])
                 + "</tr></thead><tbody>")
      for row in table.get("rows", []):
        out.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>")
      out.append("</tbody></table>")
    out.append("</section>")
  out.append("</body></html>")
  atomic_write_text(path, "\n".join(out) + "\n")
