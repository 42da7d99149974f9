"""Pictures and pages of results: image grids with labels (PNG) and static HTML indexes."""

from __future__ import annotations

import html
import os
import urllib.parse
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


def _label_fits(draw: ImageDraw.ImageDraw, font: Any, text: str,
                max_w: int) -> tuple[str, int, int]:
  """`text` made drawable by `font` and shortened with '...' to fit `max_w`; (text, w, h)."""
  text = image_io.one_line(text)
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
  grid = image_io.to_uint8(make_grid(rows, pad=pad, background=1.0))
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
  image_io.save_png(path, np.asarray(canvas))


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
  image_io.atomic_write_text(path, "\n".join(out) + "\n")
