"""Display lists of the face's parts: brows, eyes, nose, cheeks, mouth, moustache, glasses."""

from __future__ import annotations

import math

import numpy as np

from dfi_jax.data.faces.geometry import Layout, Op, band, ellipse, lin, line, mix, rgba, soft
from dfi_jax.data.faces.head import hair_colour
from dfi_jax.data.faces.params import FaceParams, GLASSES_STYLES, MOUSTACHE_STYLES


def brows(lay: Layout, p: FaceParams, a) -> list[Op]:
  colour = rgba(hair_colour(p, a["older"]), 0.8 if not a["older"] else 0.95)
  ops = []
  u = lin(-1, 1, 17)            # -1 inner end, +1 outer end
  half = lay.ew * 1.3
  th = p.brow_thickness * lay.fw * (1 - 0.55 * ((u + 1) / 2) ** 1.5)
  arch = p.brow_arch * lay.fw
  yc = lay.brow_y - arch * (1 - ((u - 0.15) / 1.15) ** 2) + p.brow_tilt * lay.fw * u
  for s in (-1, 1):
    x = lay.cx + s * (lay.ex + u * half)
    ops.append(band(x, yc - th / 2, yc + th / 2, fill=colour))
  return ops


def _almond(lay: Layout, u):
  up = lay.eye_y - lay.eh * (1 - u ** 2) ** 0.8 * (1 - 0.12 * u)
  lo = lay.eye_y + lay.eh * 0.72 * (1 - u ** 2) ** 0.9
  return up, lo


def eye_sockets(lay: Layout, p: FaceParams, a) -> list[Op]:
  ops = []
  u = lin(-0.9, 0.95, 16)
  crease = lay.eye_y - lay.eh * 1.5 * (1 - u ** 2) ** 0.7
  for s in (-1, 1):
    xc = lay.cx + s * lay.ex
    ops += soft((xc, lay.eye_y - 0.2 * lay.eh), (lay.ew * 1.5, lay.eh * 2.2), p.skin, 0.7, 0.2, n=4)
    ops.append(line(xc + s * u * lay.ew * 1.05, crease, rgba(p.skin, 0.6, 0.35),
                     0.012 * lay.fw))
  return ops


def _clip_circle(lay: Layout, s: int, x0: float, y0: float, r: float):
  """Polygon of a disc intersected with the eye's almond (both are y-convex)."""
  x = x0 + r * np.cos(lin(math.pi, 0, 25))
  dy = np.sqrt(np.clip(r ** 2 - (x - x0) ** 2, 0, None))
  xc = lay.cx + s * lay.ex
  u = np.clip(s * (x - xc) / lay.ew, -1, 1)
  up, lo = _almond(lay, u)
  top, bottom = np.maximum(y0 - dy, up), np.minimum(y0 + dy, lo)
  keep = top < bottom
  return band(x[keep], top[keep], bottom[keep], fill=None)


def eyes(lay: Layout, p: FaceParams, a) -> list[Op]:
  ops = []
  u = lin(-1, 1, 25)               # -1 inner corner, +1 outer corner
  up, lo = _almond(lay, u)
  dark = rgba((0.1, 0.07, 0.06))
  for s in (-1, 1):
    xc = lay.cx + s * lay.ex
    x = xc + s * u * lay.ew
    if a["eyes_open"]:
      ops.append(band(x, up, lo, fill=rgba((0.95, 0.94, 0.92))))
      ri = min(lay.eh * 1.05, lay.ew * 0.55)
      iy = lay.eye_y + 0.05 * lay.eh
      for k, colour in ((1.0, rgba(p.iris, 0.5)), (0.8, rgba(p.iris)),
                        (0.4, rgba((0.03, 0.03, 0.03)))):     # limbal ring, iris, pupil
        ops.append(_clip_circle(lay, s, xc, iy, ri * k)._replace(fill=colour))
      ops.append(ellipse(xc - 0.3 * ri, iy - 0.35 * ri, 0.2 * ri, 0.2 * ri,
                          fill=rgba((1, 1, 1), 1, 0.9)))
      ops.append(line(x, up, dark, 0.2 * lay.eh))
      ops.append(line(x[4:-2], lo[4:-2], rgba(p.skin, 0.55, 0.6), 0.06 * lay.eh))
      # Lashes flick out at the outer corner.
      ops.append(line([x[-3], x[-1] + s * 0.25 * lay.ew], [up[-3], up[-1] - 0.45 * lay.eh],
                       dark, 0.12 * lay.eh))
    else:
      closed = lay.eye_y + lay.eh * 0.35 * (1 - u ** 2)
      ops.append(band(x, up, closed, fill=rgba(p.skin, 0.9)))
      ops.append(line(x, closed, dark, 0.2 * lay.eh))
      for k in (0.0, 0.35, 0.7):
        i = int(round((k + 1) / 2 * (len(u) - 1)))
        ops.append(line([x[i], x[i] + s * 0.12 * lay.ew], [closed[i], closed[i] + 0.4 * lay.eh],
                         dark, 0.08 * lay.eh))
  return ops


def face_wrinkles(lay: Layout, p: FaceParams, a) -> list[Op]:
  if not a["older"]:
    return []
  ops = []
  col = rgba(p.skin, 0.55, 0.65)
  w = 0.016 * lay.fw
  for s in (-1, 1):
    ox, oy = lay.cx + s * (lay.ex + 1.1 * lay.ew), lay.eye_y
    for dy in (-0.06, 0.0, 0.06):          # crow's feet fanning from the outer corner
      ops.append(line([ox, ox + s * 0.13 * lay.fw], [oy + 0.2 * dy * lay.fh, oy + dy * lay.fh],
                       col, w))
    u = lin(-0.8, 0.8, 12)         # under-eye bag
    ops.append(line(lay.cx + s * (lay.ex + u * lay.ew),
                     lay.eye_y + lay.eh * (1.5 + 0.5 * (1 - u ** 2)), col, w))
    t = lin(0, 1, 14)              # nasolabial fold: quadratic Bezier
    p0 = np.array([lay.cx + s * 1.15 * lay.nw, lay.nose_y - 0.05 * lay.fh])
    p2 = np.array([lay.cx + s * (lay.mw + 0.07 * lay.fw), lay.mouth_y + 0.06 * lay.fh])
    p1 = np.array([lay.cx + s * (lay.mw + 0.2 * lay.fw), lay.nose_y + 0.12 * lay.fh])
    b = ((1 - t) ** 2)[:, None] * p0 + (2 * t * (1 - t))[:, None] * p1 + (t ** 2)[:, None] * p2
    ops.append(line(b[:, 0], b[:, 1], col, 1.3 * w))
    ops.append(line(lay.cx + s * np.array([lay.mw * 1.05, lay.mw * 1.12]),
                     [lay.mouth_y + 0.09 * lay.fh, lay.mouth_y + 0.22 * lay.fh], col, w))
  return ops


def nose(lay: Layout, p: FaceParams, a) -> list[Op]:
  cx, ny, nw = lay.cx, lay.nose_y, lay.nw
  side = -1.0 if lay.light[0] >= 0 else 1.0    # shadow on the side away from the light
  ops = [
      line(cx + side * nw * np.array([0.3, 0.35, 0.55]),
            [lay.eye_y + 0.1 * lay.fh, (lay.eye_y + ny) / 2, ny - 0.3 * nw],
            rgba(p.skin, 0.7, 0.25), 0.06 * lay.fw),
  ] + soft((cx, ny - 0.15 * nw), (0.5 * nw, 0.42 * nw), p.skin, 1.15, 0.4, n=4)
  for s in (-1, 1):
    ops.append(line(cx + s * nw * np.array([0.55, 0.95, 0.95, 0.6]),
                     ny + nw * np.array([-0.4, -0.05, 0.25, 0.4]),
                     rgba(p.skin, 0.55, 0.6), 0.02 * lay.fw))
    ops.append(ellipse(cx + s * 0.35 * nw, ny + 0.3 * nw, 0.18 * nw, 0.1 * nw,
                        fill=rgba(p.skin, 0.3, 0.85)))
  return ops


def cheeks(lay: Layout, p: FaceParams, a) -> list[Op]:
  smiling = a["smiling"]
  ops = []
  for s in (-1, 1):
    x = lay.cx + s * 0.56 * lay.fw
    if smiling:
      y = lay.mouth_y - 0.4 * lay.fh
      ops += soft((x, y), (0.21 * lay.fw, 0.15 * lay.fh), (0.9, 0.4, 0.4), 1, 0.3)
      ops += soft((x - s * 0.03 * lay.fw, y - 0.03 * lay.fh), (0.1 * lay.fw, 0.06 * lay.fh),
                   (1, 1, 1), 1, 0.15, n=3)
      u = lin(-0.7, 0.7, 10)      # cheeks push the lower lid up
      ops.append(line(lay.cx + s * (lay.ex + u * lay.ew),
                       lay.eye_y + lay.eh * (1.25 + 0.35 * (1 - u ** 2)),
                       rgba(p.skin, 0.6, 0.45), 0.014 * lay.fw))
    else:
      ops += soft((x, lay.mouth_y - 0.3 * lay.fh), (0.2 * lay.fw, 0.12 * lay.fh),
                   (0.9, 0.45, 0.45), 1, 0.12)
  return ops


def mouth(lay: Layout, p: FaceParams, a) -> list[Op]:
  smiling, open_ = a["smiling"], a["mouth_open"]
  mw = lay.mw * (1.15 if smiling else 1.0)
  lt = lay.lt * (0.85 if smiling else 1.0)
  u = lin(-1, 1, 33)
  x = lay.cx + u * mw
  bend = 1 - u ** 2
  if smiling:
    yc = lay.mouth_y + 0.1 * mw * bend - 0.2 * mw * u ** 2
  else:
    yc = lay.mouth_y + 0.03 * mw * bend
  cupid = lt * 0.35 * np.exp(-(u / 0.18) ** 2) * bend
  lip_up, lip_lo = rgba(p.lip, 0.9), rgba(p.lip, 1.08)
  ops = []
  if open_ or smiling:
    # An opening between the lips: a wide dark mouth with upper teeth and tongue when open;
    # a closed-mouth smile parts the lips just enough to show the upper teeth.
    if open_ and smiling:       # D-shaped: flat-ish top, deep bottom
      oh, up, down, teeth_h = 0.55 * mw, 0.08, 0.9, 0.3
    elif open_:
      oh, up, down, teeth_h = 0.6 * mw, 0.3, 0.7, 0.3
    else:
      oh, up, down, teeth_h = 0.3 * mw, 0.05, 0.95, 0.75
    yu = yc - oh * up * bend
    yl = yc + oh * down * bend
    ops.append(band(x, yu, yl, fill=rgba((0.27, 0.06, 0.07))))
    m = np.abs(u) <= (0.82 if open_ else 0.9)
    teeth = np.minimum(yu + oh * teeth_h * np.sqrt(bend), yl)
    ops.append(band(x[m], yu[m], teeth[m], fill=rgba((0.95, 0.93, 0.88))))
    for k in (-0.45, -0.15, 0.15, 0.45):
      i = int(round((k + 1) / 2 * (len(u) - 1)))
      ops.append(line([x[i], x[i]], [yu[i], teeth[i]], rgba((0.7, 0.66, 0.6)), 0.012 * lay.fw))
    if open_:
      m = np.abs(u) <= 0.6
      tongue_top = yl - oh * 0.3 * np.clip(1 - (u / 0.6) ** 2, 0, None)
      ops.append(band(x[m], tongue_top[m], yl[m], fill=rgba((0.78, 0.33, 0.36))))
    ops.append(band(x, yu - lt * 0.85 * bend ** 0.6 + cupid, yu, fill=lip_up))
    ops.append(band(x, yl, yl + lt * 1.05 * bend ** 0.6, fill=lip_lo))
  else:
    ops.append(band(x, yc, yc + lt * 1.25 * bend ** 0.6, fill=lip_lo))
    ops.append(band(x, yc - lt * bend ** 0.6 + cupid, yc, fill=lip_up))
    ops.append(line(x, yc, rgba(p.lip, 0.4), 0.12 * lt))
    ops += soft((lay.cx, yc[16] + 0.65 * lt), (0.35 * mw, 0.22 * lt), (1, 1, 1), 1, 0.25, n=3)
  if smiling:
    for s, i in ((-1, 0), (1, -1)):
      ops.append(line(x[i] + s * lay.fw * np.array([0.02, 0.07, 0.06]),
                       yc[i] + lay.fh * np.array([-0.06, 0.0, 0.06]),
                       rgba(p.skin, 0.55, 0.55), 0.018 * lay.fw))
  return ops


def moustache(lay: Layout, p: FaceParams, a) -> list[Op]:
  if not a["moustache"]:
    return []
  hair = hair_colour(p, a["older"])
  colour = rgba(hair, 0.7 if not a["older"] else 0.95)
  top = lay.nose_y + 0.5 * lay.nw
  bottom = lay.mouth_y - 0.35 * lay.lt
  gap = bottom - top
  style = MOUSTACHE_STYLES[p.moustache_style]
  if style == "chevron":
    u = lin(-1.15, 1.15, 29)
    mid = top + 0.5 * gap + 0.45 * gap * u ** 2
    th = 0.9 * gap * np.sqrt(np.clip(1 - (u / 1.15) ** 2, 0, None)) + 0.05 * gap
    yt = mid - th / 2 + 0.25 * gap * np.exp(-(u / 0.1) ** 2)    # philtrum notch
    yb = mid + th / 2
  elif style == "handlebar":
    u = lin(-1.45, 1.45, 41)
    au = np.abs(u)
    # Runs out along the lip line, then the tips curl upwards.
    mid = (top + 0.6 * gap + 0.3 * gap * np.minimum(au, 1.05) ** 2
           - 2.5 * gap * np.clip(au - 1.05, 0, None) ** 1.3)
    th = 0.75 * gap * np.clip(1 - (au / 1.5) ** 2, 0.06, None) ** 0.7
    yt, yb = mid - th / 2, mid + th / 2
  else:                                   # walrus: wide, droops over the lip, ragged edge
    u = lin(-1.2, 1.2, 31)
    yt = top - 0.05 * gap + 0.2 * gap * u ** 2
    yb = bottom + 0.6 * lay.lt + 0.5 * gap * u ** 2 + 0.12 * gap * (np.arange(len(u)) % 2)
  x = lay.cx + u * lay.mw
  ops = [band(x, yt, yb, fill=colour)]
  for i in lin(0.15, 0.85, 8) * (len(u) - 1):    # bristles, inside the shape
    i = int(round(i))
    s = 1.0 if u[i] >= 0 else -1.0
    h = yb[i] - yt[i]
    ops.append(line([x[i], x[i] + s * 0.04 * lay.mw], [yt[i] + 0.25 * h, yb[i] - 0.1 * h],
                     rgba(hair, 0.55, 0.5), 0.012 * lay.fw))
  return ops


def glasses(lay: Layout, p: FaceParams, a) -> list[Op]:
  if not a["eyeglasses"]:
    return []
  style = GLASSES_STYLES[p.glasses_style]
  hw, hh = {"round": (1.35, 1.35), "rectangular": (1.55, 1.05), "oval": (1.5, 1.15)}[style]
  hw, hh = hw * lay.ew, hh * lay.ew
  hw = min(hw, lay.ex - 0.07 * lay.fw)    # keep a visible bridge between the lenses
  ly = lay.eye_y + 0.1 * lay.eh
  frame, width = rgba(p.glasses_colour), p.glasses_thickness * lay.fw
  tint = rgba(mix(p.glasses_colour, (0.6, 0.7, 0.85), 0.6), 1.0, 0.22)
  ops = []
  for s in (-1, 1):
    xc = lay.cx + s * lay.ex
    bbox = (xc - hw, ly - hh, xc + hw, ly + hh)
    if style == "rectangular":
      ops.append(Op("rrect", bbox, fill=tint, outline=frame, width=width, extra=(0.35 * hh,)))
    else:
      ops.append(Op("ellipse", bbox, fill=tint, outline=frame, width=width))
    ops.append(line([xc - 0.55 * hw, xc - 0.1 * hw], [ly - 0.1 * hh, ly - 0.6 * hh],
                     rgba((1, 1, 1), 1, 0.3), 0.08 * hw))
    ops.append(line([xc + s * hw, lay.cx + s * 0.99 * lay.fw],
                     [ly - 0.35 * hh, ly - 0.3 * hh + 0.03 * lay.fh], frame, width))
  ops.append(line(lay.cx + np.array([-1, -0.5, 0, 0.5, 1]) * (lay.ex - hw + 0.3 * width),
                   ly - hh * np.array([0.2, 0.38, 0.42, 0.38, 0.2]), frame, width))
  return ops
