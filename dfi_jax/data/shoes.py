"""Procedural side-view shoes on white, laid out like a UT-Zappos50K folder (for inpainting).

No shoe photographs exist where this project is built and nothing may be downloaded, so CI,
the tests and the README's shoe-inpainting picture use these drawings instead. They are
**procedural**, not UT-Zappos50K: `write_folder` puts a `PROCEDURAL.txt` marker in the folder,
and `dfi_jax.runs.inpaint` reports every bank that has one as procedural in its log, metrics.json
and index.html.

Like Zappos's catalogue photos, each shoe is seen from its outer side, toe to the left, on a
white background, in a 4:3 frame (UT-Zappos50K's images are 136 × 102). `sample_shoe(seed)`
draws one from `np.random.default_rng(seed)`:

  category   sneaker, oxford, loafer, boot or pump (sets the ranges below)
  sole       thickness, colour (black, white, tan, gum), a stitch line on thin soles
  heel       height (a pump's back is lifted on a stiletto or block heel), block width
  toe        round, pointed or square; its height and length
  upper      colour (a catalogue-like palette with jitter), vamp and collar height, a boot's
             shaft height, a toe cap seam, a sneaker's side stripe, a boot's pull tab
  laces      sneakers and oxfords: 3-7 eyelets with crossing laces in a lace colour
  framing    length (0.72-0.88 of the width) and a small horizontal/vertical offset

`render(shoe, width)` draws it at 4× supersampling with Pillow and reduces it; the upper is
shaded darker towards its bottom. `write_folder(out, count)` writes
`<category>/<seed>.jpg` JPEGs for seeds `seed, seed + 1, ...`.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from dfi_jax.base import files as files_lib

CATEGORIES = ("sneaker", "oxford", "loafer", "boot", "pump")
MARKER = "PROCEDURAL.txt"
_UPPER_COLOURS = ((20, 20, 22), (92, 58, 34), (150, 100, 60), (196, 160, 120), (235, 235, 230),
                  (160, 30, 36), (32, 44, 86), (110, 112, 116), (60, 80, 50), (210, 120, 150))
_SOLE_COLOURS = ((24, 24, 24), (240, 240, 236), (186, 150, 100), (168, 112, 52))
_LACE_COLOURS = ((245, 245, 245), (20, 20, 20), (120, 80, 50), (200, 40, 40))


@dataclasses.dataclass(frozen=True)
class ShoeParams:
  """One shoe; lengths are fractions of the image width (x) or height (y)."""
  seed: int
  category: str
  left: float  # toe tip x
  length: float
  ground: float  # y of the ground line
  sole: float  # sole thickness (y)
  heel: float  # how far the back of the sole is lifted (y; pumps)
  heel_width: float  # of a pump's heel at the ground (x)
  toe: str  # round | pointed | square
  toe_height: float  # (y) above the sole at the end of the toe
  vamp: float  # (y) height of the throat above the sole
  collar: float  # (y) height of the back of the collar above the sole
  shaft: float  # (y) extra height of a boot's shaft; 0 otherwise
  upper_rgb: tuple[int, int, int]
  sole_rgb: tuple[int, int, int]
  lace_rgb: tuple[int, int, int]
  eyelets: int  # 0 = no laces
  stripe: bool
  toe_cap: bool


def sample_shoe(seed: int) -> ShoeParams:
  rng = np.random.default_rng(seed)
  category = CATEGORIES[rng.integers(len(CATEGORIES))]
  u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
  base = np.asarray(_UPPER_COLOURS[rng.integers(len(_UPPER_COLOURS))], float)
  upper = tuple(int(v) for v in np.clip(base + rng.normal(0, 12, 3), 0, 255))
  sole_rgb = _SOLE_COLOURS[rng.integers(len(_SOLE_COLOURS))]
  lace_rgb = _LACE_COLOURS[rng.integers(len(_LACE_COLOURS))]
  length = u(0.72, 0.88)
  left = (1 - length) / 2 + u(-0.03, 0.03)
  ground = u(0.8, 0.86)
  toe = ("round", "pointed", "square")[rng.integers(3)]
  sole, heel, heel_width, eyelets, shaft = u(0.03, 0.05), 0.0, 0.0, 0, 0.0
  vamp, collar, toe_height = u(0.27, 0.35), u(0.32, 0.42), u(0.16, 0.22)
  stripe = toe_cap = False
  if category == "sneaker":
    sole, eyelets, stripe = u(0.07, 0.11), int(rng.integers(4, 8)), bool(rng.random() < 0.7)
    toe = "round"
    toe_height = u(0.18, 0.24)
    vamp, collar = u(0.33, 0.4), u(0.38, 0.46)
  elif category == "oxford":
    eyelets, toe_cap = int(rng.integers(3, 6)), bool(rng.random() < 0.6)
  elif category == "loafer":
    vamp, collar, toe_cap = u(0.25, 0.31), u(0.26, 0.33), bool(rng.random() < 0.4)
  elif category == "boot":
    sole, shaft = u(0.05, 0.08), u(0.1, 0.3)
    vamp, collar = u(0.38, 0.45), u(0.38, 0.45)
  else:  # pump
    sole, heel, heel_width = u(0.015, 0.025), u(0.16, 0.3), u(0.02, 0.07)
    vamp, collar, toe_height = u(0.13, 0.18), u(0.2, 0.27), u(0.1, 0.14)
  return ShoeParams(seed, category, left, length, ground, sole, heel, heel_width, toe,
                    toe_height, vamp, collar, shaft, upper, sole_rgb, lace_rgb, eyelets,
                    stripe, toe_cap)


def _sole_y(s: ShoeParams, x):
  """y of the top of the sole under the upper at x (a pump's rises from the ball to the heel)."""
  x0, x1 = s.left, s.left + s.length
  ball = x0 + 0.4 * s.length  # where a pump's sole starts to rise
  t = np.clip((x - ball) / (x1 - ball), 0, 1)
  return s.ground - s.sole - s.heel * (3 * t**2 - 2 * t**3)


class _Marks(NamedTuple):
  """Where the upper's parts meet, in unit coordinates (x across, y down)."""
  toe_len: float  # the toe curve's length
  toe_y: float  # height of the toe's top
  throat: tuple[float, float]  # front of the opening (or the shaft)
  back_x: float
  collar_y: float


def _marks(s: ShoeParams) -> _Marks:
  toe_len = {"round": 0.16, "pointed": 0.24, "square": 0.1}[s.toe] * s.length
  throat_x = s.left + 0.5 * s.length
  back_x = s.left + s.length - 0.02 * s.length
  return _Marks(toe_len, _sole_y(s, s.left + toe_len) - s.toe_height,
                (throat_x, _sole_y(s, throat_x) - s.vamp), back_x, _sole_y(s, back_x) - s.collar)


def _outlines(s: ShoeParams, aspect: float) -> dict:
  """Polygons and lines in unit coordinates (x across, y down)."""
  xs = np.linspace(s.left, s.left + s.length, 40)
  sole_top = [(x, _sole_y(s, x)) for x in xs]
  sole = sole_top + [(x, _sole_y(s, x) + s.sole) for x in xs[::-1]]
  m = _marks(s)
  return dict(sole=sole, heel=_heel_block(s), upper=_upper(s, m, sole_top),
              lines=_lines(s, m, sole_top), tab=_tab(s, m), opening=_opening(s, m))


def _heel_block(s: ShoeParams) -> list:
  if s.heel <= 0:
    return []
  x1 = s.left + s.length
  top_l, top_r = x1 - 0.1 * s.length, x1 - 0.005
  return [(top_l, _sole_y(s, top_l) + s.sole), (top_r, _sole_y(s, top_r) + s.sole),
          (top_r - 0.01, s.ground), (top_r - 0.01 - s.heel_width, s.ground)]


def _toe(s: ShoeParams, toe_len: float) -> list:
  """The toe curve, from the sole up to its top."""
  x0, bottom = s.left, _sole_y(s, s.left)
  points = []
  for a in np.linspace(0, np.pi / 2, 12):
    if s.toe == "square":
      px, py = x0 + toe_len * (1 - np.cos(a)) ** 3, bottom - s.toe_height * np.sin(a) ** 0.5
    elif s.toe == "pointed":
      px, py = x0 + toe_len * (1 - np.cos(a)), bottom - s.toe_height * np.sin(a) ** 2
    else:
      px, py = x0 + toe_len * (1 - np.cos(a)), bottom - s.toe_height * np.sin(a)
    points.append((px, py))
  return points


def _upper(s: ShoeParams, m: _Marks, sole_top: list) -> list:
  """Toe curve, vamp, throat, collar (or shaft), back, along the sole back to the toe."""
  x0, x1 = s.left, s.left + s.length
  throat_x, throat_y = m.throat
  if s.shaft > 0:
    top = m.collar_y - s.shaft
    front = throat_x + 0.08 * s.length
    top_line = [(front - 0.02 * s.length, (throat_y + top) / 2), (front, top),
                (m.back_x + 0.01, top)]
  else:
    mid_x = (throat_x + m.back_x) / 2
    top_line = [(mid_x, _sole_y(s, mid_x) - (s.vamp + s.collar) / 2 + 0.04)]
  return _toe(s, m.toe_len) + [(x0 + m.toe_len + 0.35 * (throat_x - x0 - m.toe_len),
                                (m.toe_y + throat_y) / 2 - 0.01), m.throat] + top_line + \
      [(m.back_x, m.collar_y), (x1, m.collar_y + 0.35 * (_sole_y(s, x1) - m.collar_y)),
       (x1, _sole_y(s, x1))] + \
      [p for p in sole_top[::-1] if x0 < p[0] < x1] + [(x0, _sole_y(s, x0))]


def _lines(s: ShoeParams, m: _Marks, sole_top: list) -> list:
  """(kind, points, width) of the laces, seams, stripe and stitching."""
  x0, x1 = s.left, s.left + s.length
  lines = []
  if s.eyelets:
    a = np.asarray((x0 + m.toe_len + 0.25 * (m.throat[0] - x0 - m.toe_len), m.toe_y - 0.015))
    b = np.asarray((m.throat[0] - 0.01, m.throat[1] + 0.02))
    holes = [a + (b - a) * t for t in np.linspace(0, 1, s.eyelets)]
    lines += [("lace", [tuple(h + (-0.02, 0.025)), tuple(h2 + (0.02, -0.015))], 0.012)
              for h, h2 in zip(holes[:-1], holes[1:])]
    lines += [("lace", [tuple(h + (0.02, -0.015)), tuple(h2 + (-0.02, 0.025))], 0.012)
              for h, h2 in zip(holes[:-1], holes[1:])]
    lines += [("seam", [tuple(h + (-0.022, 0.027)), tuple(h + (-0.018, 0.023))], 0.02)
              for h in holes]
  if s.toe_cap:
    cx = x0 + m.toe_len * 1.3
    lines.append(("seam", [(cx, _sole_y(s, cx)),
                           (cx - 0.03, _sole_y(s, cx) - s.toe_height * 0.9)], 0.004))
  if s.stripe:
    sx = np.linspace(x0 + 0.4 * s.length, x1 - 0.12 * s.length, 10)
    sy = [_sole_y(s, x) - 0.03 - 0.1 * np.sin(np.pi * (x - sx[0]) / (sx[-1] - sx[0]) * 0.8)
          for x in sx]
    lines.append(("stripe", list(zip(sx, sy)), 0.02))
  if s.sole < 0.06:
    lines.append(("stitch", [(x, y - 0.008) for x, y in sole_top[2:-2]], 0.003))
  return lines


def _tab(s: ShoeParams, m: _Marks) -> list:
  """A boot's pull tab (none without a shaft)."""
  if s.shaft <= 0:
    return []
  top = m.collar_y - s.shaft
  return [(m.back_x - 0.01, top + 0.06), (m.back_x + 0.025, top + 0.07),
          (m.back_x + 0.02, top - 0.015), (m.back_x - 0.01, top - 0.01)]


def _opening(s: ShoeParams, m: _Marks) -> list:
  """The shoe's opening (none on a boot, whose shaft covers it)."""
  if s.shaft != 0:
    return []
  mid_x = (m.throat[0] + m.back_x) / 2
  return [m.throat, (mid_x, _sole_y(s, mid_x) - (s.vamp + s.collar) / 2 + 0.04),
          (m.back_x, m.collar_y), (mid_x, _sole_y(s, mid_x) - (s.vamp + s.collar) / 2 + 0.015)]


def render(s: ShoeParams, width: int = 136) -> np.ndarray:
  """`[round(0.75·width), width, 3]` float32 in [0, 1]: the shoe on white."""
  height = max(1, round(0.75 * width))
  ss = 4
  w, h = width * ss, height * ss
  shapes = _outlines(s, height / width)
  px = lambda pts: [(x * w, y * h) for x, y in pts]  # noqa: E731
  canvas = Image.new("RGB", (w, h), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  upper_mask = Image.new("L", (w, h), 0)
  ImageDraw.Draw(upper_mask).polygon(px(shapes["upper"]), fill=255)
  if shapes["tab"]:
    ImageDraw.Draw(upper_mask).polygon(px(shapes["tab"]), fill=255)
  # Upper, shaded darker towards the sole.
  rows = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
  shade = 1.08 - 0.3 * rows
  upper = np.clip(np.asarray(s.upper_rgb, np.float32) * shade, 0, 255)
  upper = np.broadcast_to(upper, (h, w, 3)).astype(np.uint8)
  canvas.paste(Image.fromarray(upper), (0, 0), upper_mask)
  if shapes["opening"]:
    lining = tuple(int(v * 0.45) for v in s.upper_rgb)
    draw.polygon(px(shapes["opening"]), fill=lining)
  colours = dict(lace=s.lace_rgb, seam=tuple(int(v * 0.6) for v in s.upper_rgb),
                 stripe=s.sole_rgb if s.sole_rgb != s.upper_rgb else s.lace_rgb,
                 stitch=tuple(int(v * 0.7 + 60) for v in s.sole_rgb))
  for kind, pts, thickness in shapes["lines"]:
    if kind != "stitch":
      draw.line(px(pts), fill=colours[kind], width=max(1, round(thickness * h)), joint="curve")
  draw.polygon(px(shapes["sole"]), fill=s.sole_rgb)
  if shapes["heel"]:
    draw.polygon(px(shapes["heel"]), fill=s.sole_rgb)
  for kind, pts, thickness in shapes["lines"]:
    if kind == "stitch":
      draw.line(px(pts), fill=colours[kind], width=max(1, round(thickness * h)))
  out = canvas.resize((width, height), Image.Resampling.BOX)
  return np.asarray(out, np.float32) / 255.0


def write_folder(out: str | Path, count: int, seed: int = 0, width: int = 136,
                 quality: int = 92) -> list[Path]:
  """Writes `count` shoes as `out/<category>/<seed>.jpg` plus the `PROCEDURAL.txt` marker."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  files_lib.atomic_write_text(  # atomic writes never write through a link the user left there
      out / MARKER, "Procedural shoes drawn by dfi_jax.data.shoes (not UT-Zappos50K "
      f"photographs): write_folder(count={count}, seed={seed}, width={width}).\n")
  paths = []
  for i in range(seed, seed + count):
    params = sample_shoe(i)
    path = out / params.category / f"{i:06d}.jpg"
    files_lib.make_folder(path.parent)
    image = np.round(render(params, width) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    files_lib.atomic_write_bytes(path, buffer.getvalue())
    paths.append(path)
  return paths


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
  if "out" not in args or set(args) - {"out", "count", "seed", "width"}:
    sys.exit("usage: python -m dfi_jax.data.shoes --out=DIR [--count=200] [--seed=0] [--width=136]")
  written = write_folder(args["out"], int(args.get("count", 200)), int(args.get("seed", 0)),
                         int(args.get("width", 136)))
  print(f"wrote {len(written)} procedural shoes under {args['out']}")
