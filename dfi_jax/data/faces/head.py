"""Display lists of the head: hair (back and front), neck, clothes, ears, skin, forehead lines."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from dfi_jax.data.faces.geometry import (
    Layout, Op, egg, ellipse, ellipse_arc, lin, line, mix, poly, rgba, soft)
from dfi_jax.data.faces.params import FaceParams, GREY_HAIR, HAIR_STYLES, NECKLINES, RGB


def hair_colour(p: FaceParams, older: bool) -> RGB:
  return mix(p.hair, GREY_HAIR, 0.8) if older else p.hair


def _hair_ellipse(lay: Layout):
  return lay.cx, lay.cy - 0.08 * lay.fh, 1.10 * lay.fw, 1.08 * lay.fh


def _cut_arc(hx, hy, ha, hb, y_cut, n=40):
  """Arc of an ellipse above the horizontal line `y_cut`, left end to right end via the top."""
  phi = math.asin(float(np.clip((y_cut - hy) / hb, -1, 1)))
  return ellipse_arc(hx, hy, ha, hb, math.pi - phi, 2 * math.pi + phi, n)


def hair_back(lay: Layout, p: FaceParams, a: Mapping[str, bool]) -> list[Op]:
  hair = hair_colour(p, a["older"])
  dark = rgba(hair, 0.72)
  hx, hy, ha, hb = _hair_ellipse(lay)
  style = HAIR_STYLES[p.hair_style]
  ops = []
  if style == "long":
    x, y = ellipse_arc(hx, hy, ha * 1.1, hb * 1.02, math.pi, 2 * math.pi)
    bottom = lay.cy + 1.5 * lay.fh
    w = ha * 1.14
    x = np.concatenate([[hx - w, hx - w * 0.9], x, [hx + w * 0.9, hx + w]])
    y = np.concatenate([[bottom, hy + 0.2 * hb], y, [hy + 0.2 * hb, bottom]])
    ops.append(poly(x, y, fill=dark))
  elif style == "receding":
    # A horseshoe of hair round the back and sides of the head, below the crown.
    x, y = ellipse_arc(hx, hy, ha * 1.0, hb, 0.0, 2 * math.pi, 64)
    top, cut = lay.cy - 0.55 * lay.fh, lay.eye_y + 0.05 * lay.fh
    y = np.clip(y, top, cut)
    ops.append(poly(x, y, fill=dark))
  else:
    cut = {"short": lay.eye_y, "fringe": lay.cy + 0.5 * lay.fh,
           "curly": lay.eye_y + 0.15 * lay.fh}[style]
    x, y = _cut_arc(hx, hy, ha, hb, cut)
    ops.append(poly(x, y, fill=dark))
    if style == "curly":
      r = 0.2 * lay.fw
      for xi, yi in zip(*_cut_arc(hx, hy, ha * 0.97, hb * 0.97, cut - 0.3 * r, 15)):
        ops.append(ellipse(xi, yi, r, r, fill=rgba(hair, 0.8)))
  return ops


def hair_front(lay: Layout, p: FaceParams, a: Mapping[str, bool]) -> list[Op]:
  hair = hair_colour(p, a["older"])
  style = HAIR_STYLES[p.hair_style]
  cx, fw, fh = lay.cx, lay.fw, lay.fh
  hx, hy, ha, hb = _hair_ellipse(lay)
  if style == "receding":
    # Bald crown: only a sheen; the side hair sits behind the head.
    return soft((cx + 0.2 * fw * lay.light[0], lay.cy - 0.78 * fh), (0.35 * fw, 0.12 * fh),
                 (1, 1, 1), 1.0, 0.15)
  y_sb = {"short": lay.eye_y - 0.05 * fh, "long": lay.eye_y + 0.3 * fh,
          "fringe": lay.eye_y - 0.02 * fh, "curly": lay.eye_y}[style]
  y_hl = lay.cy - p.hairline * fh
  if style == "fringe":
    y_hl = lay.brow_y - 0.07 * fh
  y_temple = y_hl + 0.1 * fh
  ox, oy = _cut_arc(hx, hy, ha * 0.99, hb * 0.99, y_sb)
  n = 25
  xs = lin(0.78, -0.78, n)
  part = p.hair_part
  yl = y_hl + (y_temple - y_hl) * xs ** 2 - 0.05 * fh * part * xs
  if style == "fringe":
    yl = yl - 0.06 * fh * (np.arange(n) % 2)      # jagged strands
  ix = np.concatenate([[0.9, 0.8], xs, [-0.8, -0.9]]) * fw + cx
  iy = np.concatenate([[y_sb, y_temple], yl, [y_temple, y_sb]])
  ops = [poly(np.concatenate([ox, ix]), np.concatenate([oy, iy]), fill=rgba(hair))]
  if style == "curly":
    r = 0.09 * fw
    for xi, yi in zip(ix[2:-2:2], yl[::2]):
      ops.append(ellipse(xi, yi, r, r, fill=rgba(hair)))
  else:
    # Strands: arcs concentric with the scalp, darker; a sheen on the side facing the light.
    for k in (0.8, 0.88, 0.95):
      t0 = math.pi * (1.18 + 0.05 * (k - 0.8) / 0.15)
      x, y = ellipse_arc(hx, hy, ha * k, hb * k, t0, 3 * math.pi - t0, 24)
      keep = y < np.interp(x, ix[::-1], iy[::-1]) - 0.03 * fh
      if keep.sum() > 2:
        ops.append(line(x[keep], y[keep], rgba(hair, 0.6, 0.5), 0.012 * fw))
    side = 1.0 if lay.light[0] >= 0 else -1.0
    t_mid = 1.5 * math.pi + side * 0.35
    x, y = ellipse_arc(hx, hy, ha * 0.9, hb * 0.9, t_mid - 0.25, t_mid + 0.25, 12)
    ops.append(line(x, y, rgba(mix(hair, (1, 1, 1), 0.5), 1.0, 0.35), 0.05 * fw))
  return ops


def neck_ops(lay: Layout, p: FaceParams, a) -> list[Op]:
  cx, fw, fh = lay.cx, lay.fw, lay.fh
  top, bottom = lay.cy + 0.3 * fh, 1.05
  x = cx + fw * np.array([-0.45, 0.45, 0.55, -0.55])
  y = np.array([top, top, bottom, bottom])
  return [poly(x, y, fill=rgba(p.skin, 0.86))] + soft(
      (cx, lay.cy + 0.95 * fh), (0.5 * fw, 0.18 * fh), p.skin, 0.55, 0.5)


def clothes(lay: Layout, p: FaceParams, a) -> list[Op]:
  cx, fw, fh = lay.cx, lay.fw, lay.fh
  sh = lay.cy + fh + 0.11
  shirt, neck = rgba(p.shirt), rgba(p.skin, 0.86)
  ops = [Op("rrect", (cx - 0.46, sh, cx + 0.46, sh + 0.5), fill=shirt, extra=(0.17,))]
  ops += soft((cx, sh + 0.3), (0.5, 0.2), p.shirt, 0.7, 0.4)
  style = NECKLINES[p.neckline]
  if style == "crew":
    bbox = (cx - 0.55 * fw, sh - 0.05, cx + 0.55 * fw, sh + 0.05)
    x, y = ellipse_arc(cx, sh, 0.55 * fw, 0.05, 0, math.pi, 24)
    ops += [Op("chord", bbox, fill=neck, extra=(0, 180)),
            line(x, y, rgba(p.shirt, 0.7), 0.012)]
  elif style in ("v_neck", "collar"):
    x = cx + np.array([-0.5 * fw, 0.5 * fw, 0.0])
    y = np.array([sh - 0.01, sh - 0.01, sh + 0.13])
    ops.append(poly(x, y, fill=neck))
    ops.append(line(x[[0, 2, 1]], y[[0, 2, 1]], rgba(p.shirt, 0.7), 0.01))
    if style == "collar":
      collar = rgba(mix(p.shirt, (1, 1, 1), 0.7))
      for s in (-1, 1):
        # Outlines as separate lines: PIL draws wide polygon outlines via full-canvas masks.
        x = cx + s * np.array([0.52 * fw, 0.05 * fw, 0.75 * fw, 0.52 * fw])
        y = np.array([sh - 0.03, sh + 0.13, sh + 0.07, sh - 0.03])
        ops.append(poly(x[:3], y[:3], fill=collar))
        ops.append(line(x, y, rgba(p.shirt, 0.6), 0.004))
  else:
    t = lay.cy + 0.85 * fh
    ops.append(Op("rrect", (cx - 0.62 * fw, t, cx + 0.62 * fw, sh + 0.06), fill=shirt,
                   extra=(0.05,)))
    for k in range(5):
      y = t + 0.015 + k * (sh - t) / 5
      ops.append(line(cx + np.array([-0.55, 0.55]) * fw, [y, y],
                       rgba(p.shirt, 0.8, 0.6), 0.004))
  return ops


def ears(lay: Layout, p: FaceParams, a) -> list[Op]:
  ea, eb = 0.17 * lay.fw * p.ear_size, 0.26 * lay.fh * p.ear_size
  ops = []
  for s in (-1, 1):
    x = lay.cx + s * 0.96 * lay.fw
    ops.append(ellipse(x, lay.ear_y, ea, eb, fill=rgba(p.skin, 0.9)))
    ops.append(ellipse(x + s * 0.25 * ea, lay.ear_y, 0.5 * ea, 0.65 * eb,
                        fill=rgba(p.skin, 0.68, 0.6)))
  return ops


def face_skin(lay: Layout, p: FaceParams, a) -> list[Op]:
  # Flat here; `_shading` adds the radial shading over this silhouette.
  return [poly(*egg(lay, p.jaw), fill=rgba(p.skin))]


def forehead_wrinkles(lay: Layout, p: FaceParams, a) -> list[Op]:
  if not a["older"]:
    return []
  ops = []
  col = rgba(p.skin, 0.55, 0.6)
  for k in range(3):
    y0 = lay.brow_y - (0.13 + 0.08 * k) * lay.fh
    half = 0.42 * lay.fw * (1 - 0.12 * k)
    xs = lin(-1, 1, 16)
    y = y0 - 0.04 * lay.fh * (1 - xs ** 2) + 0.006 * lay.fh * np.sin(7 * xs + k)
    ops.append(line(lay.cx + xs * half, y, col, 0.016 * lay.fw))
  return ops
