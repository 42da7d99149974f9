"""Where a face's parts sit (`Layout`, landmarks) and the display-list ops they are drawn with."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import ImageDraw

from dfi_jax.data.faces.params import FaceParams, LANDMARKS, RGB, rgb_tuple


# ---------------------------------------------------------------------------------------
# Geometry.


class Layout(NamedTuple):
  """Attribute-independent geometry in unit image coordinates."""
  cx: float
  cy: float         # face (egg) centre
  fw: float         # face half-width
  fh: float         # face half-height
  eye_y: float
  ex: float         # eye centre offset from cx
  ew: float         # eye half-width
  eh: float         # eye half-height
  brow_y: float
  nose_y: float     # nose tip
  nw: float         # nose half-width
  mouth_y: float
  mw: float         # mouth half-width
  lt: float         # lip thickness
  ear_y: float
  light: tuple[float, float]   # unit vector towards brighter


def layout(p: FaceParams) -> Layout:
  fw, fh = p.face_width * p.scale, p.face_height * p.scale
  eye_y = p.eye_line
  mw = p.mouth_width * fw
  return Layout(
      cx=p.centre_x, cy=eye_y + 0.05 * fh, fw=fw, fh=fh, eye_y=eye_y,
      ex=p.eye_spacing * fw, ew=p.eye_size * fw, eh=p.eye_size * fw * p.eye_aspect,
      brow_y=eye_y - p.brow_height * fh, nose_y=eye_y + p.nose_length * fh,
      nw=p.nose_width * fw, mouth_y=eye_y + p.mouth_height * fh, mw=mw,
      lt=p.lip_thickness * mw, ear_y=eye_y + 0.12 * fh,
      light=(math.cos(p.light_angle), math.sin(p.light_angle)))


def landmarks(lay: Layout, size: int) -> np.ndarray:
  c = lay.cx
  pts = {
      "left_eye": (c - lay.ex, lay.eye_y), "right_eye": (c + lay.ex, lay.eye_y),
      "left_brow": (c - lay.ex, lay.brow_y), "right_brow": (c + lay.ex, lay.brow_y),
      "nose_tip": (c, lay.nose_y),
      "mouth_left": (c - lay.mw, lay.mouth_y), "mouth_right": (c + lay.mw, lay.mouth_y),
      "mouth_centre": (c, lay.mouth_y), "chin": (c, lay.cy + lay.fh),
      "left_ear": (c - 0.97 * lay.fw, lay.ear_y), "right_ear": (c + 0.97 * lay.fw, lay.ear_y),
      "forehead": (c, lay.cy - 0.6 * lay.fh),
  }
  # Unit coordinate u spans pixel edges 0..S; pixel centres sit at half-integers.
  return np.array([pts[n] for n in LANDMARKS], np.float32) * size - 0.5


# ---------------------------------------------------------------------------------------
# Display lists.


class Op(NamedTuple):
  """One PIL drawing call in unit coordinates; colours are RGBA ints (alpha blends)."""
  kind: str                 # ellipse | polygon | line | chord | rrect
  geom: tuple[float, ...]   # bbox (x0, y0, x1, y1) or flat points (x0, y0, x1, y1, ...)
  fill: tuple[int, ...] | None = None
  outline: tuple[int, ...] | None = None
  width: float = 0.0        # line / outline width
  extra: tuple[float, ...] = ()   # chord: (start, end) degrees; rrect: (radius,)


def rgba(rgb, mul: float = 1.0, alpha: float = 1.0) -> tuple[int, ...]:
  # Plain Python: this runs thousands of times per render, where NumPy overhead dominates.
  return tuple(int(min(max(v * mul, 0.0), 1.0) * 255 + 0.5) for v in rgb) + (
      int(alpha * 255 + 0.5),)


def mix(a, b, t: float) -> RGB:
  return rgb_tuple((1 - t) * np.asarray(a) + t * np.asarray(b))


def _pts(x, y) -> tuple[float, ...]:
  x = np.asarray(x, float)
  xy = np.empty(2 * x.size)
  xy[0::2], xy[1::2] = x, y
  return tuple(xy.tolist())


def lin(start: float, stop: float, num: int) -> np.ndarray:
  """`np.linspace` without its Python overhead (it dominated op building)."""
  return start + np.arange(num) * ((stop - start) / (num - 1))


def ellipse(cx, cy, a, b, **kw) -> Op:
  return Op("ellipse", (cx - a, cy - b, cx + a, cy + b), **kw)


def poly(x, y, **kw) -> Op:
  return Op("polygon", _pts(x, y), **kw)


def line(x, y, colour, width) -> Op:
  return Op("line", _pts(x, y), fill=colour, width=width)


def band(x, top, bottom, **kw) -> Op:
  """Polygon between two curves sampled at the same x (top left->right, bottom back)."""
  x = np.asarray(x)
  return poly(np.concatenate([x, x[::-1]]),
               np.concatenate([np.asarray(top), np.asarray(bottom)[::-1]]), **kw)


def soft(centre, radii, rgb, mul: float, alpha: float, n: int = 6) -> list[Op]:
  """A soft-edged blob: `n` nested ellipses about `centre` `(cx, cy)`, the largest of `radii`
  `(a, b)`, in `rgb`·`mul`, whose blended opacity reaches `alpha` inside."""
  (cx, cy), (a, b) = centre, radii
  each = 1 - (1 - alpha) ** (1 / n)
  colour = rgba(rgb, mul, each)
  return [ellipse(cx, cy, a * k, b * k, fill=colour) for k in lin(1, 0.45, n)]


def ellipse_arc(cx, cy, a, b, t0, t1, n=32):
  t = lin(t0, t1, n)
  return cx + a * np.cos(t), cy + b * np.sin(t)


def egg(lay: Layout, jaw: float, n: int = 96):
  """Face outline: an ellipse whose lower half narrows towards the jaw."""
  t = np.arange(n) * (2 * math.pi / n)
  s = np.sin(t)
  x = lay.fw * np.cos(t) * (1 - jaw * np.clip(s, 0, None) ** 2)
  return lay.cx + x, lay.cy + lay.fh * s


def draw_op(draw: ImageDraw.ImageDraw, op: Op, scale: float, ink: int | None = None) -> None:
  """Draws one op on a canvas `scale` px wide; with `ink`, paints its footprint in `ink`."""
  geom = [v * scale for v in op.geom]
  fill, outline = op.fill, op.outline
  if ink is not None:
    fill = None if fill is None else ink
    outline = None if outline is None else ink
  width = max(1, int(round(op.width * scale)))
  if op.kind == "ellipse":
    draw.ellipse(geom, fill=fill, outline=outline, width=width)
  elif op.kind == "polygon":
    draw.polygon(geom, fill=fill, outline=outline, width=width)
  elif op.kind == "line":
    draw.line(geom, fill=fill, width=width, joint="curve")
  elif op.kind == "chord":
    draw.chord(geom, op.extra[0], op.extra[1], fill=fill, outline=outline, width=width)
  elif op.kind == "rrect":
    draw.rounded_rectangle(geom, radius=op.extra[0] * scale, fill=fill, outline=outline,
                           width=width)
  else:
    raise ValueError(f"unknown op kind {op.kind!r}")
