"""Procedural aligned frontal faces with binary attributes and counterfactual ground truth.

This is the embedded default dataset. DFI needs a bank of faces labelled with binary
attributes, and evaluating an edit needs, for a test face, the *same identity* rendered
again with one attribute toggled. Everything here is deterministic: `sample_face(seed)`
draws an identity (`FaceParams`) from `np.random.default_rng(seed)`, and `render` draws it
at any square size from 32 to 1024 px.

Attributes (`ATTRIBUTES`), each a change of *shape*, not just of colour:
  older       grey hair, brows and moustache; forehead lines, crow's feet, under-eye bags,
              nasolabial folds and marionette lines.
  mouth_open  dark mouth interior with upper teeth and tongue vs a closed line between lips.
  eyes_open   sclera, iris, pupil and catchlight vs a closed lid with a lash line.
  smiling     mouth wider with corners up, lips parted over the upper teeth (a D-shaped
              open mouth with mouth_open), smile creases, cheeks raised and flushed.
  moustache   a hair-coloured moustache (3 styles) between nose and upper lip.
  eyeglasses  round, rectangular or oval frames, bridge and temples, faint lens tint.

Joint distribution: the six attributes are independent Bernoulli variables with the
marginals in `ATTRIBUTE_PROBS` (older .30, mouth_open .35, eyes_open .80, smiling .45,
moustache .25, eyeglasses .30), drawn first from the seed's generator; identity parameters
(face shape, placement jitter, skin, hair colour and style, brows, eyes, iris, nose, mouth,
lips, ears, clothing, background, lighting, glasses and moustache style) are drawn after
them, also independently of the attributes.

How a face is drawn: every feature is a small display list of PIL drawing operations in
unit image coordinates (0..1 across the image), built by a function that sees only the
attributes it declares. The lists are drawn back to front at 4x supersampling (2x above
256 px) and box-reduced. The result is multiplied by a smooth lighting gradient with a
vignette and, over the face silhouette (less opaque front hair), by a radial shading that
darkens towards the rim with its peak leaning to the light and by a low-frequency skin
texture (upsampled 7x7 and 23x23 random fields). Then a slight blur (half identity, half a
binomial kernel of radius `r = max(1, round(size / 256))` px) and Gaussian pixel noise
(sigma `NOISE_SIGMA` = 0.01). Texture, lighting, shading and noise depend on the identity and
seed alone, so a counterfactual has exactly the same ones.

Masks are geometric, not diffs: `masks[a]` is the footprint of every drawing operation of
every feature that depends on `a`, taken over *all* values of that feature's attributes,
box-reduced to output pixels (any covered sub-pixel counts) and dilated by the blur radius
`r`. A pixel can only change where an `a`-dependent op lands in either render, and every
later step is pixelwise except the blur, so toggling `a` leaves every pixel outside
`masks[a]` bit-for-bit unchanged (the tests check this). Masks depend on the identity only,
never on any attribute value. They are somewhat generous: `older` covers all hair, the
brows, the wrinkle lines and the would-be moustache; `smiling` and `mouth_open` both cover
the union of the four mouth shapes; `smiling` also covers the cheeks and lower lids.

Conventions: images are `[S, S, 3]` float32 RGB in [0, 1]. Landmarks are `(x, y)` in output
pixel coordinates with pixel `(row i, column j)` centred at `(x, y) = (j, i)`. "left" and
"right" are *image* sides: `left_eye` is the eye nearer x = 0 (the subject's right eye).

Speed (CPU time per `render`, masks included, one core of a busy 2-core machine): 32 px
~8 ms, 64 px ~9 ms, 128 px ~18 ms, 256 px ~43 ms, 512 px ~85 ms, 1024 px ~0.46 s.
`generate` skips the masks: ~7 ms per 64 px face, ~11 ms per 128 px face.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageDraw

ATTRIBUTES: tuple[str, ...] = (
    "older", "mouth_open", "eyes_open", "smiling", "moustache", "eyeglasses")
ATTRIBUTE_PROBS: dict[str, float] = {
    "older": 0.30, "mouth_open": 0.35, "eyes_open": 0.80,
    "smiling": 0.45, "moustache": 0.25, "eyeglasses": 0.30,
}
LANDMARKS: tuple[str, ...] = (
    "left_eye", "right_eye", "left_brow", "right_brow", "nose_tip", "mouth_left",
    "mouth_right", "mouth_centre", "chin", "left_ear", "right_ear", "forehead")
MIN_SIZE, MAX_SIZE = 32, 1024
HAIR_STYLES = ("short", "long", "receding", "fringe", "curly")
NECKLINES = ("crew", "v_neck", "collar", "turtleneck")
GLASSES_STYLES = ("round", "rectangular", "oval")
MOUSTACHE_STYLES = ("chevron", "handlebar", "walrus")
NOISE_SIGMA = 0.01

RGB = tuple[float, float, float]

_HAIR_PALETTE = (
    (0.07, 0.06, 0.05), (0.20, 0.13, 0.08), (0.36, 0.23, 0.13), (0.52, 0.24, 0.11),
    (0.80, 0.64, 0.38), (0.70, 0.36, 0.15), (0.55, 0.41, 0.26))
_IRIS_PALETTE = (
    (0.36, 0.22, 0.12), (0.20, 0.12, 0.07), (0.27, 0.45, 0.68), (0.30, 0.50, 0.32),
    (0.45, 0.50, 0.55), (0.50, 0.40, 0.18))
_FRAME_PALETTE = (
    (0.05, 0.05, 0.06), (0.30, 0.17, 0.08), (0.10, 0.13, 0.32), (0.45, 0.07, 0.10),
    (0.45, 0.45, 0.48))
_GREY_HAIR = (0.86, 0.86, 0.84)


@dataclasses.dataclass(frozen=True)
class FaceParams:
  """One identity plus its attribute values. Lengths are fractions of the image side
  (`centre_x`, `eye_line`, `face_*`) or of the face half-width `fw` / half-height `fh`.

  Attributes:
    centre_x: x of the face centre line.
    eye_line: y of the eye centres.
    scale: jitter multiplying `face_width` and `face_height`.
    face_width: face half-width at scale 1.
    face_height: face half-height at scale 1.
    jaw: narrowing of the lower face (0 is an ellipse).
    skin: RGB in [0, 1].
    hair: RGB in [0, 1] (before greying by `older`).
    hair_style: index into `HAIR_STYLES`.
    hairline: forehead hairline height above the face centre, in `fh`.
    hair_part: signed side-part offset of the hairline, in `fw`.
    brow_thickness, brow_height, brow_arch, brow_tilt: in `fw` (height in `fh`).
    eye_spacing: eye centre offset from the centre line, in `fw`.
    eye_size: eye half-width, in `fw`.
    eye_aspect: eye half-height / half-width.
    iris: RGB in [0, 1].
    nose_length: nose tip below the eye line, in `fh`.
    nose_width: nose half-width, in `fw`.
    mouth_width: mouth half-width, in `fw`.
    mouth_height: mouth line below the eye line, in `fh`.
    lip_thickness: in mouth half-widths.
    lip: RGB in [0, 1].
    ear_size: ear scale.
    shirt: RGB in [0, 1].
    neckline: index into `NECKLINES`.
    background, background2: RGB endpoints of the background gradient.
    background_angle: gradient direction, radians.
    light_angle: direction the light increases towards, radians (image axes).
    light_strength: brightness change across the image.
    glasses_style: index into `GLASSES_STYLES`.
    glasses_colour: RGB in [0, 1].
    glasses_thickness: frame width, in `fw`.
    moustache_style: index into `MOUSTACHE_STYLES`.
    attributes: `tuple[bool, ...]` aligned with `ATTRIBUTES`.
    seed: the seed everything (including texture and noise) derives from.
  """
  centre_x: float
  eye_line: float
  scale: float
  face_width: float
  face_height: float
  jaw: float
  skin: RGB
  hair: RGB
  hair_style: int
  hairline: float
  hair_part: float
  brow_thickness: float
  brow_height: float
  brow_arch: float
  brow_tilt: float
  eye_spacing: float
  eye_size: float
  eye_aspect: float
  iris: RGB
  nose_length: float
  nose_width: float
  mouth_width: float
  mouth_height: float
  lip_thickness: float
  lip: RGB
  ear_size: float
  shirt: RGB
  neckline: int
  background: RGB
  background2: RGB
  background_angle: float
  light_angle: float
  light_strength: float
  glasses_style: int
  glasses_colour: RGB
  glasses_thickness: float
  moustache_style: int
  attributes: tuple[bool, ...]
  seed: int


class Face(NamedTuple):
  """A rendered face.

  Attributes:
    image: `[S, S, 3]` float32 RGB in [0, 1].
    masks: attribute name -> `[S, S]` bool, the pixels toggling that attribute may change.
    landmarks: `[len(LANDMARKS), 2]` float32 `(x, y)` in output pixel coordinates.
  """
  image: np.ndarray
  masks: dict[str, np.ndarray]
  landmarks: np.ndarray


def _rgb(rng: np.random.Generator, palette, jitter: float) -> RGB:
  base = np.asarray(palette[rng.integers(len(palette))])
  return _tuple(np.clip(base + rng.uniform(-jitter, jitter, 3), 0.0, 1.0))


def _tuple(x) -> RGB:
  return tuple(float(v) for v in x)


def sample_face(seed: int) -> FaceParams:
  """Draws an identity and its attributes, deterministically from `seed`.

  Args:
    seed: non-negative int, passed to `np.random.default_rng`.

  Returns:
    The `FaceParams`; attributes are independent Bernoulli draws with `ATTRIBUTE_PROBS`.
  """
  rng = np.random.default_rng(seed)
  probs = np.array([ATTRIBUTE_PROBS[a] for a in ATTRIBUTES])
  attributes = tuple(bool(b) for b in rng.random(len(ATTRIBUTES)) < probs)
  u = rng.uniform
  light, dark = np.array([0.98, 0.84, 0.73]), np.array([0.40, 0.26, 0.18])
  tone = u() ** 1.3
  skin = np.clip((1 - tone) * light + tone * dark + u(-0.03, 0.03, 3), 0, 1)
  lip_target = np.array([0.72, 0.30, 0.32])
  lip = np.clip(0.45 * skin + 0.55 * lip_target * (0.65 + 0.5 * skin.mean()), 0, 1)
  shirt = u(0.05, 0.9, 3)
  shirt = shirt * u(0.5, 1.0) + shirt.mean() * (1 - u(0.5, 1.0))
  background = u(0.25, 0.92, 3)
  background = 0.6 * background + 0.4 * background.mean()   # muted, photo-studio like
  nose_length = u(0.34, 0.44)
  return FaceParams(
      centre_x=0.5 + u(-0.025, 0.025),
      eye_line=0.40 + u(-0.02, 0.02),
      scale=u(0.92, 1.08),
      face_width=u(0.205, 0.24),
      face_height=u(0.28, 0.315),
      jaw=u(0.05, 0.25),
      skin=_tuple(skin),
      hair=_rgb(rng, _HAIR_PALETTE, 0.04),
      hair_style=int(rng.integers(len(HAIR_STYLES))),
      hairline=u(0.52, 0.66),
      hair_part=u(-0.3, 0.3),
      brow_thickness=u(0.045, 0.095),
      brow_height=u(0.17, 0.24),
      brow_arch=u(0.015, 0.06),
      brow_tilt=u(-0.03, 0.03),
      eye_spacing=u(0.4, 0.48),
      eye_size=u(0.18, 0.23),
      eye_aspect=u(0.45, 0.6),
      iris=_rgb(rng, _IRIS_PALETTE, 0.05),
      nose_length=nose_length,
      nose_width=u(0.15, 0.22),
      mouth_width=u(0.38, 0.5),
      mouth_height=nose_length + u(0.25, 0.31),
      lip_thickness=u(0.15, 0.25),
      lip=_tuple(lip),
      ear_size=u(0.85, 1.15),
      shirt=_tuple(np.clip(shirt, 0, 1)),
      neckline=int(rng.integers(len(NECKLINES))),
      background=_tuple(background),
      background2=_tuple(np.clip(background * u(0.55, 0.9) + u(-0.05, 0.05, 3), 0, 1)),
      background_angle=u(0, 2 * math.pi),
      light_angle=u(0, 2 * math.pi),
      light_strength=u(0.1, 0.3),
      glasses_style=int(rng.integers(len(GLASSES_STYLES))),
      glasses_colour=_rgb(rng, _FRAME_PALETTE, 0.03),
      glasses_thickness=u(0.03, 0.05),
      moustache_style=int(rng.integers(len(MOUSTACHE_STYLES))),
      attributes=attributes,
      seed=int(seed),
  )


def _check_attribute_names(names) -> None:
  unknown = [n for n in names if n not in ATTRIBUTES]
  if unknown:
    raise ValueError(f"unknown attribute(s) {unknown}; valid attributes are {ATTRIBUTES}")


def with_attributes(params: FaceParams, **values: bool) -> FaceParams:
  """Returns `params` with the named attributes set, e.g. `with_attributes(p, smiling=True)`.

  Raises:
    ValueError: a name is not in `ATTRIBUTES` (the message lists them).
  """
  _check_attribute_names(values)
  attrs = tuple(bool(values.get(a, v)) for a, v in zip(ATTRIBUTES, params.attributes))
  return dataclasses.replace(params, attributes=attrs)


def counterfactual(params: FaceParams, attribute: str, size: int) -> Face:
  """Renders the same identity (same texture, lighting, noise) with `attribute` toggled."""
  _check_attribute_names([attribute])
  value = params.attributes[ATTRIBUTES.index(attribute)]
  return render(with_attributes(params, **{attribute: not value}), size)


def generate(seeds: Sequence[int], size: int) -> tuple[np.ndarray, np.ndarray]:
  """Renders `sample_face(seed)` for each seed.

  Returns:
    images `[N, size, size, 3]` float32 in [0, 1] and attributes `[N, 6]` bool (columns in
    `ATTRIBUTES` order).
  """
  _check_size(size)
  images = np.empty((len(seeds), size, size, 3), np.float32)
  attributes = np.zeros((len(seeds), len(ATTRIBUTES)), bool)
  for i, seed in enumerate(seeds):
    params = sample_face(seed)
    images[i] = _render(params, size, with_masks=False).image
    attributes[i] = params.attributes
  return images, attributes


# ---------------------------------------------------------------------------------------
# Geometry.


class _Layout(NamedTuple):
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


def _layout(p: FaceParams) -> _Layout:
  fw, fh = p.face_width * p.scale, p.face_height * p.scale
  eye_y = p.eye_line
  mw = p.mouth_width * fw
  return _Layout(
      cx=p.centre_x, cy=eye_y + 0.05 * fh, fw=fw, fh=fh, eye_y=eye_y,
      ex=p.eye_spacing * fw, ew=p.eye_size * fw, eh=p.eye_size * fw * p.eye_aspect,
      brow_y=eye_y - p.brow_height * fh, nose_y=eye_y + p.nose_length * fh,
      nw=p.nose_width * fw, mouth_y=eye_y + p.mouth_height * fh, mw=mw,
      lt=p.lip_thickness * mw, ear_y=eye_y + 0.12 * fh,
      light=(math.cos(p.light_angle), math.sin(p.light_angle)))


def _landmarks(lay: _Layout, size: int) -> np.ndarray:
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


class _Op(NamedTuple):
  """One PIL drawing call in unit coordinates; colours are RGBA ints (alpha blends)."""
  kind: str                 # ellipse | polygon | line | chord | rrect
  geom: tuple[float, ...]   # bbox (x0, y0, x1, y1) or flat points (x0, y0, x1, y1, ...)
  fill: tuple[int, ...] | None = None
  outline: tuple[int, ...] | None = None
  width: float = 0.0        # line / outline width
  extra: tuple[float, ...] = ()   # chord: (start, end) degrees; rrect: (radius,)


def _col(rgb, mul: float = 1.0, alpha: float = 1.0) -> tuple[int, ...]:
  # Plain Python: this runs thousands of times per render, where NumPy overhead dominates.
  return tuple(int(min(max(v * mul, 0.0), 1.0) * 255 + 0.5) for v in rgb) + (
      int(alpha * 255 + 0.5),)


def _mix(a, b, t: float) -> RGB:
  return _tuple((1 - t) * np.asarray(a) + t * np.asarray(b))


def _pts(x, y) -> tuple[float, ...]:
  x = np.asarray(x, float)
  xy = np.empty(2 * x.size)
  xy[0::2], xy[1::2] = x, y
  return tuple(xy.tolist())


def _lin(start: float, stop: float, num: int) -> np.ndarray:
  """`np.linspace` without its Python overhead (it dominated op building)."""
  return start + np.arange(num) * ((stop - start) / (num - 1))


def _ellipse(cx, cy, a, b, **kw) -> _Op:
  return _Op("ellipse", (cx - a, cy - b, cx + a, cy + b), **kw)


def _poly(x, y, **kw) -> _Op:
  return _Op("polygon", _pts(x, y), **kw)


def _line(x, y, colour, width) -> _Op:
  return _Op("line", _pts(x, y), fill=colour, width=width)


def _band(x, top, bottom, **kw) -> _Op:
  """Polygon between two curves sampled at the same x (top left->right, bottom back)."""
  x = np.asarray(x)
  return _poly(np.concatenate([x, x[::-1]]),
               np.concatenate([np.asarray(top), np.asarray(bottom)[::-1]]), **kw)


def _soft(cx, cy, a, b, rgb, mul: float, alpha: float, n: int = 6) -> list[_Op]:
  """A soft-edged blob: `n` nested ellipses whose blended opacity reaches `alpha` inside."""
  each = 1 - (1 - alpha) ** (1 / n)
  colour = _col(rgb, mul, each)
  return [_ellipse(cx, cy, a * k, b * k, fill=colour) for k in _lin(1, 0.45, n)]


def _ellipse_arc(cx, cy, a, b, t0, t1, n=32):
  t = _lin(t0, t1, n)
  return cx + a * np.cos(t), cy + b * np.sin(t)


def _egg(lay: _Layout, jaw: float, n: int = 96):
  """Face outline: an ellipse whose lower half narrows towards the jaw."""
  t = np.arange(n) * (2 * math.pi / n)
  s = np.sin(t)
  x = lay.fw * np.cos(t) * (1 - jaw * np.clip(s, 0, None) ** 2)
  return lay.cx + x, lay.cy + lay.fh * s


def _hair_colour(p: FaceParams, older: bool) -> RGB:
  return _mix(p.hair, _GREY_HAIR, 0.8) if older else p.hair


def _hair_ellipse(lay: _Layout):
  return lay.cx, lay.cy - 0.08 * lay.fh, 1.10 * lay.fw, 1.08 * lay.fh


def _cut_arc(hx, hy, ha, hb, y_cut, n=40):
  """Arc of an ellipse above the horizontal line `y_cut`, left end to right end via the top."""
  phi = math.asin(float(np.clip((y_cut - hy) / hb, -1, 1)))
  return _ellipse_arc(hx, hy, ha, hb, math.pi - phi, 2 * math.pi + phi, n)


def _hair_back(lay: _Layout, p: FaceParams, a: Mapping[str, bool]) -> list[_Op]:
  hair = _hair_colour(p, a["older"])
  dark = _col(hair, 0.72)
  hx, hy, ha, hb = _hair_ellipse(lay)
  style = HAIR_STYLES[p.hair_style]
  ops = []
  if style == "long":
    x, y = _ellipse_arc(hx, hy, ha * 1.1, hb * 1.02, math.pi, 2 * math.pi)
    bottom = lay.cy + 1.5 * lay.fh
    w = ha * 1.14
    x = np.concatenate([[hx - w, hx - w * 0.9], x, [hx + w * 0.9, hx + w]])
    y = np.concatenate([[bottom, hy + 0.2 * hb], y, [hy + 0.2 * hb, bottom]])
    ops.append(_poly(x, y, fill=dark))
  elif style == "receding":
    # A horseshoe of hair round the back and sides of the head, below the crown.
    x, y = _ellipse_arc(hx, hy, ha * 1.0, hb, 0.0, 2 * math.pi, 64)
    top, cut = lay.cy - 0.55 * lay.fh, lay.eye_y + 0.05 * lay.fh
    y = np.clip(y, top, cut)
    ops.append(_poly(x, y, fill=dark))
  else:
    cut = {"short": lay.eye_y, "fringe": lay.cy + 0.5 * lay.fh,
           "curly": lay.eye_y + 0.15 * lay.fh}[style]
    x, y = _cut_arc(hx, hy, ha, hb, cut)
    ops.append(_poly(x, y, fill=dark))
    if style == "curly":
      r = 0.2 * lay.fw
      for xi, yi in zip(*_cut_arc(hx, hy, ha * 0.97, hb * 0.97, cut - 0.3 * r, 15)):
        ops.append(_ellipse(xi, yi, r, r, fill=_col(hair, 0.8)))
  return ops


def _hair_front(lay: _Layout, p: FaceParams, a: Mapping[str, bool]) -> list[_Op]:
  hair = _hair_colour(p, a["older"])
  style = HAIR_STYLES[p.hair_style]
  cx, fw, fh = lay.cx, lay.fw, lay.fh
  hx, hy, ha, hb = _hair_ellipse(lay)
  if style == "receding":
    # Bald crown: only a sheen; the side hair sits behind the head.
    return _soft(cx + 0.2 * fw * lay.light[0], lay.cy - 0.78 * fh, 0.35 * fw, 0.12 * fh,
                 (1, 1, 1), 1.0, 0.15)
  y_sb = {"short": lay.eye_y - 0.05 * fh, "long": lay.eye_y + 0.3 * fh,
          "fringe": lay.eye_y - 0.02 * fh, "curly": lay.eye_y}[style]
  y_hl = lay.cy - p.hairline * fh
  if style == "fringe":
    y_hl = lay.brow_y - 0.07 * fh
  y_temple = y_hl + 0.1 * fh
  ox, oy = _cut_arc(hx, hy, ha * 0.99, hb * 0.99, y_sb)
  n = 25
  xs = _lin(0.78, -0.78, n)
  part = p.hair_part
  yl = y_hl + (y_temple - y_hl) * xs ** 2 - 0.05 * fh * part * xs
  if style == "fringe":
    yl = yl - 0.06 * fh * (np.arange(n) % 2)      # jagged strands
  ix = np.concatenate([[0.9, 0.8], xs, [-0.8, -0.9]]) * fw + cx
  iy = np.concatenate([[y_sb, y_temple], yl, [y_temple, y_sb]])
  ops = [_poly(np.concatenate([ox, ix]), np.concatenate([oy, iy]), fill=_col(hair))]
  if style == "curly":
    r = 0.09 * fw
    for xi, yi in zip(ix[2:-2:2], yl[::2]):
      ops.append(_ellipse(xi, yi, r, r, fill=_col(hair)))
  else:
    # Strands: arcs concentric with the scalp, darker; a sheen on the side facing the light.
    for k in (0.8, 0.88, 0.95):
      t0 = math.pi * (1.18 + 0.05 * (k - 0.8) / 0.15)
      x, y = _ellipse_arc(hx, hy, ha * k, hb * k, t0, 3 * math.pi - t0, 24)
      keep = y < np.interp(x, ix[::-1], iy[::-1]) - 0.03 * fh
      if keep.sum() > 2:
        ops.append(_line(x[keep], y[keep], _col(hair, 0.6, 0.5), 0.012 * fw))
    side = 1.0 if lay.light[0] >= 0 else -1.0
    t_mid = 1.5 * math.pi + side * 0.35
    x, y = _ellipse_arc(hx, hy, ha * 0.9, hb * 0.9, t_mid - 0.25, t_mid + 0.25, 12)
    ops.append(_line(x, y, _col(_mix(hair, (1, 1, 1), 0.5), 1.0, 0.35), 0.05 * fw))
  return ops


def _neck(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  cx, fw, fh = lay.cx, lay.fw, lay.fh
  top, bottom = lay.cy + 0.3 * fh, 1.05
  x = cx + fw * np.array([-0.45, 0.45, 0.55, -0.55])
  y = np.array([top, top, bottom, bottom])
  return [_poly(x, y, fill=_col(p.skin, 0.86))] + _soft(
      cx, lay.cy + 0.95 * fh, 0.5 * fw, 0.18 * fh, p.skin, 0.55, 0.5)


def _clothes(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  cx, fw, fh = lay.cx, lay.fw, lay.fh
  sh = lay.cy + fh + 0.11
  shirt, neck = _col(p.shirt), _col(p.skin, 0.86)
  ops = [_Op("rrect", (cx - 0.46, sh, cx + 0.46, sh + 0.5), fill=shirt, extra=(0.17,))]
  ops += _soft(cx, sh + 0.3, 0.5, 0.2, p.shirt, 0.7, 0.4)
  style = NECKLINES[p.neckline]
  if style == "crew":
    bbox = (cx - 0.55 * fw, sh - 0.05, cx + 0.55 * fw, sh + 0.05)
    x, y = _ellipse_arc(cx, sh, 0.55 * fw, 0.05, 0, math.pi, 24)
    ops += [_Op("chord", bbox, fill=neck, extra=(0, 180)),
            _line(x, y, _col(p.shirt, 0.7), 0.012)]
  elif style in ("v_neck", "collar"):
    x = cx + np.array([-0.5 * fw, 0.5 * fw, 0.0])
    y = np.array([sh - 0.01, sh - 0.01, sh + 0.13])
    ops.append(_poly(x, y, fill=neck))
    ops.append(_line(x[[0, 2, 1]], y[[0, 2, 1]], _col(p.shirt, 0.7), 0.01))
    if style == "collar":
      collar = _col(_mix(p.shirt, (1, 1, 1), 0.7))
      for s in (-1, 1):
        # Outlines as separate lines: PIL draws wide polygon outlines via full-canvas masks.
        x = cx + s * np.array([0.52 * fw, 0.05 * fw, 0.75 * fw, 0.52 * fw])
        y = np.array([sh - 0.03, sh + 0.13, sh + 0.07, sh - 0.03])
        ops.append(_poly(x[:3], y[:3], fill=collar))
        ops.append(_line(x, y, _col(p.shirt, 0.6), 0.004))
  else:
    t = lay.cy + 0.85 * fh
    ops.append(_Op("rrect", (cx - 0.62 * fw, t, cx + 0.62 * fw, sh + 0.06), fill=shirt,
                   extra=(0.05,)))
    for k in range(5):
      y = t + 0.015 + k * (sh - t) / 5
      ops.append(_line(cx + np.array([-0.55, 0.55]) * fw, [y, y],
                       _col(p.shirt, 0.8, 0.6), 0.004))
  return ops


def _ears(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  ea, eb = 0.17 * lay.fw * p.ear_size, 0.26 * lay.fh * p.ear_size
  ops = []
  for s in (-1, 1):
    x = lay.cx + s * 0.96 * lay.fw
    ops.append(_ellipse(x, lay.ear_y, ea, eb, fill=_col(p.skin, 0.9)))
    ops.append(_ellipse(x + s * 0.25 * ea, lay.ear_y, 0.5 * ea, 0.65 * eb,
                        fill=_col(p.skin, 0.68, 0.6)))
  return ops


def _face(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  # Flat here; `_shading` adds the radial shading over this silhouette.
  return [_poly(*_egg(lay, p.jaw), fill=_col(p.skin))]


def _forehead_wrinkles(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  if not a["older"]:
    return []
  ops = []
  col = _col(p.skin, 0.55, 0.6)
  for k in range(3):
    y0 = lay.brow_y - (0.13 + 0.08 * k) * lay.fh
    half = 0.42 * lay.fw * (1 - 0.12 * k)
    xs = _lin(-1, 1, 16)
    y = y0 - 0.04 * lay.fh * (1 - xs ** 2) + 0.006 * lay.fh * np.sin(7 * xs + k)
    ops.append(_line(lay.cx + xs * half, y, col, 0.016 * lay.fw))
  return ops


def _brows(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  colour = _col(_hair_colour(p, a["older"]), 0.8 if not a["older"] else 0.95)
  ops = []
  u = _lin(-1, 1, 17)            # -1 inner end, +1 outer end
  half = lay.ew * 1.3
  th = p.brow_thickness * lay.fw * (1 - 0.55 * ((u + 1) / 2) ** 1.5)
  arch = p.brow_arch * lay.fw
  yc = lay.brow_y - arch * (1 - ((u - 0.15) / 1.15) ** 2) + p.brow_tilt * lay.fw * u
  for s in (-1, 1):
    x = lay.cx + s * (lay.ex + u * half)
    ops.append(_band(x, yc - th / 2, yc + th / 2, fill=colour))
  return ops


def _almond(lay: _Layout, u):
  up = lay.eye_y - lay.eh * (1 - u ** 2) ** 0.8 * (1 - 0.12 * u)
  lo = lay.eye_y + lay.eh * 0.72 * (1 - u ** 2) ** 0.9
  return up, lo


def _eye_sockets(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  ops = []
  u = _lin(-0.9, 0.95, 16)
  crease = lay.eye_y - lay.eh * 1.5 * (1 - u ** 2) ** 0.7
  for s in (-1, 1):
    xc = lay.cx + s * lay.ex
    ops += _soft(xc, lay.eye_y - 0.2 * lay.eh, lay.ew * 1.5, lay.eh * 2.2, p.skin, 0.7, 0.2, n=4)
    ops.append(_line(xc + s * u * lay.ew * 1.05, crease, _col(p.skin, 0.6, 0.35),
                     0.012 * lay.fw))
  return ops


def _clip_circle(lay: _Layout, s: int, x0: float, y0: float, r: float):
  """Polygon of a disc intersected with the eye's almond (both are y-convex)."""
  x = x0 + r * np.cos(_lin(math.pi, 0, 25))
  dy = np.sqrt(np.clip(r ** 2 - (x - x0) ** 2, 0, None))
  xc = lay.cx + s * lay.ex
  u = np.clip(s * (x - xc) / lay.ew, -1, 1)
  up, lo = _almond(lay, u)
  top, bottom = np.maximum(y0 - dy, up), np.minimum(y0 + dy, lo)
  keep = top < bottom
  return _band(x[keep], top[keep], bottom[keep], fill=None)


def _eyes(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  ops = []
  u = _lin(-1, 1, 25)               # -1 inner corner, +1 outer corner
  up, lo = _almond(lay, u)
  dark = _col((0.1, 0.07, 0.06))
  for s in (-1, 1):
    xc = lay.cx + s * lay.ex
    x = xc + s * u * lay.ew
    if a["eyes_open"]:
      ops.append(_band(x, up, lo, fill=_col((0.95, 0.94, 0.92))))
      ri = min(lay.eh * 1.05, lay.ew * 0.55)
      iy = lay.eye_y + 0.05 * lay.eh
      for k, colour in ((1.0, _col(p.iris, 0.5)), (0.8, _col(p.iris)),
                        (0.4, _col((0.03, 0.03, 0.03)))):     # limbal ring, iris, pupil
        ops.append(_clip_circle(lay, s, xc, iy, ri * k)._replace(fill=colour))
      ops.append(_ellipse(xc - 0.3 * ri, iy - 0.35 * ri, 0.2 * ri, 0.2 * ri,
                          fill=_col((1, 1, 1), 1, 0.9)))
      ops.append(_line(x, up, dark, 0.2 * lay.eh))
      ops.append(_line(x[4:-2], lo[4:-2], _col(p.skin, 0.55, 0.6), 0.06 * lay.eh))
      # Lashes flick out at the outer corner.
      ops.append(_line([x[-3], x[-1] + s * 0.25 * lay.ew], [up[-3], up[-1] - 0.45 * lay.eh],
                       dark, 0.12 * lay.eh))
    else:
      closed = lay.eye_y + lay.eh * 0.35 * (1 - u ** 2)
      ops.append(_band(x, up, closed, fill=_col(p.skin, 0.9)))
      ops.append(_line(x, closed, dark, 0.2 * lay.eh))
      for k in (0.0, 0.35, 0.7):
        i = int(round((k + 1) / 2 * (len(u) - 1)))
        ops.append(_line([x[i], x[i] + s * 0.12 * lay.ew], [closed[i], closed[i] + 0.4 * lay.eh],
                         dark, 0.08 * lay.eh))
  return ops


def _face_wrinkles(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  if not a["older"]:
    return []
  ops = []
  col = _col(p.skin, 0.55, 0.65)
  w = 0.016 * lay.fw
  for s in (-1, 1):
    ox, oy = lay.cx + s * (lay.ex + 1.1 * lay.ew), lay.eye_y
    for dy in (-0.06, 0.0, 0.06):          # crow's feet fanning from the outer corner
      ops.append(_line([ox, ox + s * 0.13 * lay.fw], [oy + 0.2 * dy * lay.fh, oy + dy * lay.fh],
                       col, w))
    u = _lin(-0.8, 0.8, 12)         # under-eye bag
    ops.append(_line(lay.cx + s * (lay.ex + u * lay.ew),
                     lay.eye_y + lay.eh * (1.5 + 0.5 * (1 - u ** 2)), col, w))
    t = _lin(0, 1, 14)              # nasolabial fold: quadratic Bezier
    p0 = np.array([lay.cx + s * 1.15 * lay.nw, lay.nose_y - 0.05 * lay.fh])
    p2 = np.array([lay.cx + s * (lay.mw + 0.07 * lay.fw), lay.mouth_y + 0.06 * lay.fh])
    p1 = np.array([lay.cx + s * (lay.mw + 0.2 * lay.fw), lay.nose_y + 0.12 * lay.fh])
    b = ((1 - t) ** 2)[:, None] * p0 + (2 * t * (1 - t))[:, None] * p1 + (t ** 2)[:, None] * p2
    ops.append(_line(b[:, 0], b[:, 1], col, 1.3 * w))
    ops.append(_line(lay.cx + s * np.array([lay.mw * 1.05, lay.mw * 1.12]),
                     [lay.mouth_y + 0.09 * lay.fh, lay.mouth_y + 0.22 * lay.fh], col, w))
  return ops


def _nose(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  cx, ny, nw = lay.cx, lay.nose_y, lay.nw
  side = -1.0 if lay.light[0] >= 0 else 1.0    # shadow on the side away from the light
  ops = [
      _line(cx + side * nw * np.array([0.3, 0.35, 0.55]),
            [lay.eye_y + 0.1 * lay.fh, (lay.eye_y + ny) / 2, ny - 0.3 * nw],
            _col(p.skin, 0.7, 0.25), 0.06 * lay.fw),
  ] + _soft(cx, ny - 0.15 * nw, 0.5 * nw, 0.42 * nw, p.skin, 1.15, 0.4, n=4)
  for s in (-1, 1):
    ops.append(_line(cx + s * nw * np.array([0.55, 0.95, 0.95, 0.6]),
                     ny + nw * np.array([-0.4, -0.05, 0.25, 0.4]),
                     _col(p.skin, 0.55, 0.6), 0.02 * lay.fw))
    ops.append(_ellipse(cx + s * 0.35 * nw, ny + 0.3 * nw, 0.18 * nw, 0.1 * nw,
                        fill=_col(p.skin, 0.3, 0.85)))
  return ops


def _cheeks(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  smiling = a["smiling"]
  ops = []
  for s in (-1, 1):
    x = lay.cx + s * 0.56 * lay.fw
    if smiling:
      y = lay.mouth_y - 0.4 * lay.fh
      ops += _soft(x, y, 0.21 * lay.fw, 0.15 * lay.fh, (0.9, 0.4, 0.4), 1, 0.3)
      ops += _soft(x - s * 0.03 * lay.fw, y - 0.03 * lay.fh, 0.1 * lay.fw, 0.06 * lay.fh,
                   (1, 1, 1), 1, 0.15, n=3)
      u = _lin(-0.7, 0.7, 10)      # cheeks push the lower lid up
      ops.append(_line(lay.cx + s * (lay.ex + u * lay.ew),
                       lay.eye_y + lay.eh * (1.25 + 0.35 * (1 - u ** 2)),
                       _col(p.skin, 0.6, 0.45), 0.014 * lay.fw))
    else:
      ops += _soft(x, lay.mouth_y - 0.3 * lay.fh, 0.2 * lay.fw, 0.12 * lay.fh,
                   (0.9, 0.45, 0.45), 1, 0.12)
  return ops


def _mouth(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  smiling, open_ = a["smiling"], a["mouth_open"]
  mw = lay.mw * (1.15 if smiling else 1.0)
  lt = lay.lt * (0.85 if smiling else 1.0)
  u = _lin(-1, 1, 33)
  x = lay.cx + u * mw
  bend = 1 - u ** 2
  if smiling:
    yc = lay.mouth_y + 0.1 * mw * bend - 0.2 * mw * u ** 2
  else:
    yc = lay.mouth_y + 0.03 * mw * bend
  cupid = lt * 0.35 * np.exp(-(u / 0.18) ** 2) * bend
  lip_up, lip_lo = _col(p.lip, 0.9), _col(p.lip, 1.08)
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
    ops.append(_band(x, yu, yl, fill=_col((0.27, 0.06, 0.07))))
    m = np.abs(u) <= (0.82 if open_ else 0.9)
    teeth = np.minimum(yu + oh * teeth_h * np.sqrt(bend), yl)
    ops.append(_band(x[m], yu[m], teeth[m], fill=_col((0.95, 0.93, 0.88))))
    for k in (-0.45, -0.15, 0.15, 0.45):
      i = int(round((k + 1) / 2 * (len(u) - 1)))
      ops.append(_line([x[i], x[i]], [yu[i], teeth[i]], _col((0.7, 0.66, 0.6)), 0.012 * lay.fw))
    if open_:
      m = np.abs(u) <= 0.6
      tongue_top = yl - oh * 0.3 * np.clip(1 - (u / 0.6) ** 2, 0, None)
      ops.append(_band(x[m], tongue_top[m], yl[m], fill=_col((0.78, 0.33, 0.36))))
    ops.append(_band(x, yu - lt * 0.85 * bend ** 0.6 + cupid, yu, fill=lip_up))
    ops.append(_band(x, yl, yl + lt * 1.05 * bend ** 0.6, fill=lip_lo))
  else:
    ops.append(_band(x, yc, yc + lt * 1.25 * bend ** 0.6, fill=lip_lo))
    ops.append(_band(x, yc - lt * bend ** 0.6 + cupid, yc, fill=lip_up))
    ops.append(_line(x, yc, _col(p.lip, 0.4), 0.12 * lt))
    ops += _soft(lay.cx, yc[16] + 0.65 * lt, 0.35 * mw, 0.22 * lt, (1, 1, 1), 1, 0.25, n=3)
  if smiling:
    for s, i in ((-1, 0), (1, -1)):
      ops.append(_line(x[i] + s * lay.fw * np.array([0.02, 0.07, 0.06]),
                       yc[i] + lay.fh * np.array([-0.06, 0.0, 0.06]),
                       _col(p.skin, 0.55, 0.55), 0.018 * lay.fw))
  return ops


def _moustache(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  if not a["moustache"]:
    return []
  hair = _hair_colour(p, a["older"])
  colour = _col(hair, 0.7 if not a["older"] else 0.95)
  top = lay.nose_y + 0.5 * lay.nw
  bottom = lay.mouth_y - 0.35 * lay.lt
  gap = bottom - top
  style = MOUSTACHE_STYLES[p.moustache_style]
  if style == "chevron":
    u = _lin(-1.15, 1.15, 29)
    mid = top + 0.5 * gap + 0.45 * gap * u ** 2
    th = 0.9 * gap * np.sqrt(np.clip(1 - (u / 1.15) ** 2, 0, None)) + 0.05 * gap
    yt = mid - th / 2 + 0.25 * gap * np.exp(-(u / 0.1) ** 2)    # philtrum notch
    yb = mid + th / 2
  elif style == "handlebar":
    u = _lin(-1.45, 1.45, 41)
    au = np.abs(u)
    # Runs out along the lip line, then the tips curl upwards.
    mid = (top + 0.6 * gap + 0.3 * gap * np.minimum(au, 1.05) ** 2
           - 2.5 * gap * np.clip(au - 1.05, 0, None) ** 1.3)
    th = 0.75 * gap * np.clip(1 - (au / 1.5) ** 2, 0.06, None) ** 0.7
    yt, yb = mid - th / 2, mid + th / 2
  else:                                   # walrus: wide, droops over the lip, ragged edge
    u = _lin(-1.2, 1.2, 31)
    yt = top - 0.05 * gap + 0.2 * gap * u ** 2
    yb = bottom + 0.6 * lay.lt + 0.5 * gap * u ** 2 + 0.12 * gap * (np.arange(len(u)) % 2)
  x = lay.cx + u * lay.mw
  ops = [_band(x, yt, yb, fill=colour)]
  for i in _lin(0.15, 0.85, 8) * (len(u) - 1):    # bristles, inside the shape
    i = int(round(i))
    s = 1.0 if u[i] >= 0 else -1.0
    h = yb[i] - yt[i]
    ops.append(_line([x[i], x[i] + s * 0.04 * lay.mw], [yt[i] + 0.25 * h, yb[i] - 0.1 * h],
                     _col(hair, 0.55, 0.5), 0.012 * lay.fw))
  return ops


def _glasses(lay: _Layout, p: FaceParams, a) -> list[_Op]:
  if not a["eyeglasses"]:
    return []
  style = GLASSES_STYLES[p.glasses_style]
  hw, hh = {"round": (1.35, 1.35), "rectangular": (1.55, 1.05), "oval": (1.5, 1.15)}[style]
  hw, hh = hw * lay.ew, hh * lay.ew
  hw = min(hw, lay.ex - 0.07 * lay.fw)    # keep a visible bridge between the lenses
  ly = lay.eye_y + 0.1 * lay.eh
  frame, width = _col(p.glasses_colour), p.glasses_thickness * lay.fw
  tint = _col(_mix(p.glasses_colour, (0.6, 0.7, 0.85), 0.6), 1.0, 0.22)
  ops = []
  for s in (-1, 1):
    xc = lay.cx + s * lay.ex
    bbox = (xc - hw, ly - hh, xc + hw, ly + hh)
    if style == "rectangular":
      ops.append(_Op("rrect", bbox, fill=tint, outline=frame, width=width, extra=(0.35 * hh,)))
    else:
      ops.append(_Op("ellipse", bbox, fill=tint, outline=frame, width=width))
    ops.append(_line([xc - 0.55 * hw, xc - 0.1 * hw], [ly - 0.1 * hh, ly - 0.6 * hh],
                     _col((1, 1, 1), 1, 0.3), 0.08 * hw))
    ops.append(_line([xc + s * hw, lay.cx + s * 0.99 * lay.fw],
                     [ly - 0.35 * hh, ly - 0.3 * hh + 0.03 * lay.fh], frame, width))
  ops.append(_line(lay.cx + np.array([-1, -0.5, 0, 0.5, 1]) * (lay.ex - hw + 0.3 * width),
                   ly - hh * np.array([0.2, 0.38, 0.42, 0.38, 0.2]), frame, width))
  return ops


class _Feature(NamedTuple):
  name: str
  deps: tuple[str, ...]     # the only attributes `build` may read
  build: Callable[[_Layout, FaceParams, Mapping[str, bool]], list[_Op]]


# Drawn in this order (back to front).
_FEATURES: tuple[_Feature, ...] = (
    _Feature("hair_back", ("older",), _hair_back),
    _Feature("neck", (), _neck),
    _Feature("clothes", (), _clothes),
    _Feature("ears", (), _ears),
    _Feature("face", (), _face),
    _Feature("forehead_wrinkles", ("older",), _forehead_wrinkles),
    _Feature("hair_front", ("older",), _hair_front),
    _Feature("eye_sockets", (), _eye_sockets),
    _Feature("brows", ("older",), _brows),
    _Feature("eyes", ("eyes_open",), _eyes),
    _Feature("nose", (), _nose),
    _Feature("cheeks", ("smiling",), _cheeks),
    _Feature("face_wrinkles", ("older",), _face_wrinkles),
    _Feature("mouth", ("mouth_open", "smiling"), _mouth),
    _Feature("moustache", ("moustache", "older"), _moustache),
    _Feature("glasses", ("eyeglasses",), _glasses),
)


def _draw(draw: ImageDraw.ImageDraw, op: _Op, scale: float, ink: int | None = None) -> None:
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


# ---------------------------------------------------------------------------------------
# Rendering.


def _check_size(size) -> None:
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not (
      MIN_SIZE <= size <= MAX_SIZE):
    raise ValueError(f"size must be an int in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")


def _background(p: FaceParams, size: int, width: int) -> Image.Image:
  n = 16
  y, x = (np.mgrid[0:n, 0:n] + 0.5) / n - 0.5
  t = np.clip(0.5 + x * math.cos(p.background_angle) + y * math.sin(p.background_angle), 0, 1)
  glow = np.exp(-((x - (p.centre_x - 0.5)) ** 2 + (y + 0.1) ** 2) / 0.08)[..., None]
  c = (1 - t[..., None]) * np.asarray(p.background) + t[..., None] * np.asarray(p.background2)
  c = np.clip(c * (0.9 + 0.18 * glow), 0, 1)
  small = Image.fromarray(np.round(c * 255).astype(np.uint8), "RGB")
  # Smooth at output resolution, then blocks of `ss` x `ss`: each block box-averages back to
  # its own value, and this is 3x faster than a bilinear resize straight to the canvas.
  return small.resize((size, size), Image.BILINEAR).resize((width, width), Image.NEAREST)


def _smooth_field(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
  """`[size, size]` float32 low-frequency field with roughly unit amplitude."""
  f = rng.standard_normal((cells, cells)).astype(np.float32)
  return np.asarray(Image.fromarray(f, "F").resize((size, size), Image.BICUBIC))


def _shading(p: FaceParams, lay: _Layout, face: np.ndarray) -> np.ndarray:
  """`[S, S, 1]` multiplicative lighting, vignette, face shading and skin texture.

  Args:
    p: the identity; the texture comes from `p.seed`.
    lay: its layout.
    face: `[S, S]` float32 coverage of the face silhouette (identity-only).
  """
  size = face.shape[0]
  y, x = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
  lx, ly = lay.light
  light = 1 + p.light_strength * ((x - 0.5) * lx + (y - 0.5) * ly)
  light *= 1 - 0.35 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
  # Radial shading over the face, darker towards its rim, its peak leaning to the light.
  r2 = (((x - lay.cx - 0.3 * lx * lay.fw) / lay.fw) ** 2
        + ((y - lay.cy + 0.1 * lay.fh - 0.3 * ly * lay.fh) / lay.fh) ** 2)
  radial = 0.8 + 0.26 * (1 - np.minimum(r2, 1)) ** 0.8
  rng = np.random.default_rng([p.seed, 1])
  texture = 0.035 * _smooth_field(rng, 7, size) + 0.015 * _smooth_field(rng, 23, size)
  return (light * (1 + face * (radial * (1 + texture) - 1)))[..., None]


def _face_coverage(p: FaceParams, lay: _Layout, ss: int, width: int) -> np.ndarray:
  """`[S, S]` float32 in [0, 1]: the face silhouette not covered by opaque front hair.

  Identity-only (hair geometry does not depend on `older`), so shading by it keeps the
  counterfactual guarantee.
  """
  layer = Image.new("L", (width, width), 0)
  draw = ImageDraw.Draw(layer)
  for op in _face(lay, p, {}):
    _draw(draw, op, width, ink=255)
  for op in _hair_front(lay, p, {"older": False}):
    if (op.fill or (0, 0, 0, 0))[3] == 255:
      _draw(draw, op, width, ink=0)
  return np.asarray(layer.reduce(ss), np.float32) * np.float32(1 / 255)


def _binomial_blur(img: np.ndarray, r: int) -> np.ndarray:
  """Separable blur, half identity and half binomial of order 2r (support r px), edge padded."""
  k = np.array([math.comb(2 * r, i) for i in range(2 * r + 1)], np.float32) / 4.0 ** r * 0.5
  k[r] += 0.5
  for axis in (0, 1):
    pad = [(0, 0)] * img.ndim
    pad[axis] = (r, r)
    padded = np.pad(img, pad, mode="edge")
    n = img.shape[axis]
    img = sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
  return img


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
  """Square dilation of a 2-D bool mask by `r` px."""
  for axis in (0, 1):
    out = mask.copy()
    for d in range(1, r + 1):
      if axis == 0:
        out[d:] |= mask[:-d]
        out[:-d] |= mask[d:]
      else:
        out[:, d:] |= mask[:, :-d]
        out[:, :-d] |= mask[:, d:]
    mask = out
  return mask


def layout_landmarks(params: FaceParams, size: int) -> np.ndarray:
  """The `[len(LANDMARKS), 2]` float32 landmarks `render(params, size)` returns, without
  rendering (they depend on the geometry only)."""
  _check_size(size)
  return _landmarks(_layout(params), int(size))


def render(params: FaceParams, size: int) -> Face:
  """Renders `params` as a `size` x `size` face with masks and landmarks.

  Args:
    params: the identity and attribute values.
    size: output side in pixels, an int in [32, 1024].

  Returns:
    `Face(image [S, S, 3] float32, masks {attr: [S, S] bool}, landmarks [12, 2] float32)`.

  Raises:
    ValueError: `size` is out of range, or `params.attributes` has the wrong length.
  """
  return _render(params, size, with_masks=True)


def _render(params: FaceParams, size: int, with_masks: bool) -> Face:
  """`render`; without masks (an empty dict) when `with_masks` is False, ~2x faster."""
  _check_size(size)
  if len(params.attributes) != len(ATTRIBUTES):
    raise ValueError(f"params.attributes must have {len(ATTRIBUTES)} entries aligned with "
                     f"{ATTRIBUTES}, got {params.attributes}")
  size = int(size)
  ss = 4 if size <= 256 else 2
  width = size * ss
  lay = _layout(params)
  values = dict(zip(ATTRIBUTES, params.attributes))
  cache: dict[tuple[str, tuple[bool, ...]], list[_Op]] = {}

  def ops_for(feature: _Feature, combo: tuple[bool, ...]) -> list[_Op]:
    key = (feature.name, combo)
    if key not in cache:
      cache[key] = feature.build(lay, params, dict(zip(feature.deps, combo)))
    return cache[key]

  canvas = _background(params, size, width)
  draw = ImageDraw.Draw(canvas, "RGBA")
  for feature in _FEATURES:
    for op in ops_for(feature, tuple(bool(values[d]) for d in feature.deps)):
      _draw(draw, op, width)
  # PIL's box reduction is ~30x faster than NumPy's strided sums; its rounding to 8 bits
  # (<= 0.002) is far below the pixel noise added later.
  pixels = np.asarray(canvas.reduce(ss), np.float32)
  face = _face_coverage(params, lay, ss, width)
  image = pixels * np.float32(1 / 255) * _shading(params, lay, face)
  blur = max(1, round(size / 256))
  image = _binomial_blur(image, blur)
  noise = np.random.default_rng([params.seed, size, 2]).standard_normal(
      image.shape, dtype=np.float32)
  image = np.clip(image + NOISE_SIGMA * noise, 0.0, 1.0).astype(np.float32)

  # A pixel can change only where some op of a feature depending on the attribute lands,
  # in either state, so its footprint (over all values of the feature's attributes, making
  # masks identity-only) bounds the change before the blur; the blur spreads it by `blur`
  # px, exactly (tests check that nothing outside changes).
  masks = {}
  for attribute in ATTRIBUTES if with_masks else ():
    layer = Image.new("L", (width, width), 0)
    mdraw = ImageDraw.Draw(layer)
    seen = set()
    for feature in _FEATURES:
      if attribute not in feature.deps:
        continue
      for combo in itertools.product((False, True), repeat=len(feature.deps)):
        for op in ops_for(feature, combo):
          # Footprints ignore colour, so ops differing only in colour (grey vs dark hair)
          # are drawn once.
          key = (op.kind, op.geom, op.fill is None, op.outline is None, op.width, op.extra)
          if key not in seen:
            seen.add(key)
            _draw(mdraw, op, width, ink=255)
    masks[attribute] = _dilate(np.asarray(layer.reduce(ss)) > 0, blur)
  return Face(image=image, masks=masks, landmarks=_landmarks(lay, size))
