"""Pictures and pages of results: image grids with labels (PNG) and static HTML indexes."""

from __future__ import annotations

import html
import os
import urllib.parse
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io


def make_grid(rows: list[list[np.ndarray]], pad: int = 2, background: float = 1.0) -> np.ndarray:
  """Tiles equal-size `[h, w, 3]` images into one `float32` image.

  `pad` pixels of `background` surround every tile (outer border included). Rows may differ in
  length; missing tiles are `background`. The result is
  `[pad + n_rows * (h + pad), pad + n_cols * (w + pad), 3]`, `n_cols` the longest row.
  """
  tiles = [[image_io.as_float_image(t, f"tile [{i}][{j}]") for j, t in enumerate(r)]
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


LABEL_SIZE = 14  # px, the labels' font size
MIN_TILE = 192  # tiles are enlarged (nearest neighbour) to at least this side by default


def _font(size: int = LABEL_SIZE) -> tuple[Any, bool]:
  """A font for labels and whether it draws Greek (δ): DejaVu Sans where installed, else
  Pillow's own (Latin only: δ is then written 'd')."""
  try:
    return ImageFont.truetype("DejaVuSans.ttf", size), True
  except OSError:
    try:
      return ImageFont.load_default(size=size), False
    except TypeError:  # Pillow < 10.1
      return ImageFont.load_default(), False


def _drawable(text: str, greek: bool) -> str:
  text = files_lib.one_line(text)
  return text if greek else text.replace("δ", "d")


def _wrap(draw: ImageDraw.ImageDraw, font: Any, text: str, max_w: int) -> list[str]:
  """`text` in lines no wider than `max_w`: broken at spaces (and after '_' or '+'), a word
  still too wide broken between characters; nothing is left out."""
  def width(t):
    l, _, r, _ = draw.textbbox((0, 0), t, font=font)
    return r - l

  try:
    draw.textbbox((0, 0), text, font=font)
  except (UnicodeError, ValueError):
    text = text.encode("ascii", "replace").decode("ascii")
  words = []
  for word in text.split(" "):
    for piece in word.replace("_", "_\0").replace("+", "+\0").split("\0"):
      while piece and width(piece) > max_w:  # break between characters
        n = max(1, max(k for k in range(1, len(piece) + 1) if width(piece[:k]) <= max_w)
                if width(piece[:1]) <= max_w else 1)
        words.append((piece[:n], False))
        piece = piece[n:]
      if piece:
        words.append((piece, False))
    if words:
      words[-1] = (words[-1][0], True)  # a space follows
  lines, line = [], ""
  for piece, spaced in words:
    trial = line + piece
    if line and width(trial.rstrip()) > max_w:
      lines.append(line.rstrip())
      trial = piece
    line = trial + (" " if spaced else "")
  if line.strip() or not lines:
    lines.append(line.rstrip())
  return lines


def save_grid(path: str | os.PathLike, rows: list[list[np.ndarray]],
              row_labels: list[str] | None = None, col_labels: list[str] | None = None,
              pad: int = 2, scale: int = 1, min_tile: int = 0) -> None:
  """`make_grid` on white with optional labels in a header row / left column, saved as PNG.

  Tiles are enlarged `scale`× (nearest neighbour), or more where needed to reach `min_tile` px
  (an edit run's grid: `MIN_TILE`, 3× for 64²). Column labels wider than a tile wrap onto more
  lines; no label is ever cut.
  """
  first = np.asarray(next(t for r in rows for t in r))
  h0, w0 = first.shape[:2]
  scale = max(scale, -(-min_tile // max(h0, w0)))
  if scale > 1:
    rows = [[np.repeat(np.repeat(np.asarray(t), scale, 0), scale, 1) for t in r] for r in rows]
  grid = image_io.to_uint8(make_grid(rows, pad=pad, background=1.0))
  h, w = h0 * scale, w0 * scale
  n_cols = max(len(r) for r in rows)
  if row_labels is not None and len(row_labels) != len(rows):
    raise ValueError(f"{os.fspath(path)}: {len(row_labels)} row labels for {len(rows)} rows")
  if col_labels is not None and len(col_labels) != n_cols:
    raise ValueError(f"{os.fspath(path)}: {len(col_labels)} column labels for {n_cols} columns")
  font, greek = _font()
  probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  margin, line_h = 4, int(LABEL_SIZE * 1.3)
  rlab = [_wrap(probe, font, _drawable(s, greek), 10**6)[0] for s in row_labels or []]
  clab = [_wrap(probe, font, _drawable(s, greek), w) for s in col_labels or []]
  left = max((probe.textbbox((0, 0), t, font=font)[2] for t in rlab), default=-2 * margin)
  left += 2 * margin
  head = max((len(lines) * line_h for lines in clab), default=-2 * margin) + 2 * margin
  canvas = Image.new("RGB", (left + grid.shape[1], head + grid.shape[0]), (255, 255, 255))
  canvas.paste(Image.fromarray(grid), (left, head))
  draw = ImageDraw.Draw(canvas)
  for j, lines in enumerate(clab):
    for k, text in enumerate(lines):
      tw = draw.textbbox((0, 0), text, font=font)[2]
      draw.text((left + pad + j * (w + pad) + (w - tw) // 2, margin + k * line_h), text,
                fill=(0, 0, 0), font=font)
  for i, text in enumerate(rlab):
    draw.text((margin, head + pad + i * (h + pad) + (h - line_h) // 2), text, fill=(0, 0, 0),
              font=font)
  image_io.save_png(path, np.asarray(canvas))


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em}
p{white-space:pre-wrap}.figs{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}
img{max-width:100%;image-rendering:pixelated}figcaption{font-size:90%;color:#333;max-width:24em}
.note{background:#fff6d5;border-left:4px solid #e0b000;padding:.3em .6em}dl{font-size:90%}
dt{font-weight:600}dd{margin:0 0 .4em 1.5em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .6em}"""
_SECTION_KEYS = {"heading", "text", "figures", "rows", "table", "notes"}


def _esc(value: Any) -> str:
  return html.escape(str(value), quote=True)


def write_index_html(path: str | os.PathLike, title: str, sections: list[dict]) -> None:
  """Atomically writes a self-contained static HTML page (inline CSS, no JavaScript).

  Args:
    path: the `.html` file.
    title: page title and top heading.
    sections: `{"heading": str, "text": str (optional), "notes": [str] (optional, highlighted),
      "figures": [{"src": relative path, "caption": str, "width": CSS px (optional)}]
      (optional), "rows": [[figure, …], …] (optional: each list one row, e.g. an input beside
      its edits), "table": {"columns": [...], "rows": [[...]], "explained": {column: text}}
      (optional)}`.
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
    for note in sec.get("notes", []):
      out.append(f'<p class="note">{_esc(note)}</p>')
    for figures in ([sec["figures"]] if sec.get("figures") else []) + list(sec.get("rows", [])):
      out.append('<div class="figs">')
      for fig in figures:
        src, cap = _esc(urllib.parse.quote(str(fig["src"]))), _esc(fig.get("caption", ""))
        size = f' style="width:{int(fig["width"])}px"' if fig.get("width") else ""
        out.append(f'<figure><a href="{src}"><img src="{src}" alt="{cap}"{size}></a>'
                   f"<figcaption>{cap}</figcaption></figure>")
      out.append("</div>")
    if sec.get("table"):
      table = sec["table"]
      out.append("<table><thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in table["columns"])
                 + "</tr></thead><tbody>")
      for row in table.get("rows", []):
        out.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>")
      out.append("</tbody></table>")
      if table.get("explained"):
        out.append("<dl>" + "".join(f"<dt>{_esc(c)}</dt><dd>{_esc(e)}</dd>"
                                    for c, e in table["explained"].items()) + "</dl>")
    out.append("</section>")
  out.append("</body></html>")
  files_lib.atomic_write_text(path, "\n".join(out) + "\n")
