"""The study's chart: DFI's share of the choices per edit, with bootstrap whiskers
(`analysis.analyse`'s result drawn as a PNG)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dfi_jax.data import image_io

_COLOURS = [(47, 111, 179), (214, 123, 36), (60, 150, 90), (150, 80, 160), (120, 120, 120)]


def plot(result: dict, path: str | os.PathLike) -> None:
  """Bar chart PNG: fraction of choices for DFI per edit with CI whiskers; labels give ratios."""
  rows = result["edits"] + result["overall"]
  methods = sorted({e["method"] for e in rows})
  font = ImageFont.load_default(size=13)
  small = ImageFont.load_default(size=11)
  bar, gap, left, top, height, bottom = 46, 22, 58, 58, 260, 70
  width = left + max(1, len(rows)) * (bar + gap) + gap
  width = max(width, 420)
  canvas = Image.new("RGB", (width, top + height + bottom), "white")
  draw = ImageDraw.Draw(canvas)

  def y(f: float) -> float:
    return top + height * (1 - f)

  pct = round(100 * result["level"])
  draw.text((left, 8), f"DFI preferred (fraction of choices, {pct}% bootstrap CI)",
            fill="black", font=font)
  for f in (0, 0.25, 0.5, 0.75, 1):
    draw.line([(left, y(f)), (width - gap // 2, y(f))],
              fill=(120, 120, 120) if f == 0.5 else (225, 225, 225), width=1)
    draw.text((left - 8, y(f)), f"{f:g}", fill="black", font=small, anchor="rm")
  if len(methods) > 1:
    x = left
    for m in methods:
      c = _COLOURS[methods.index(m) % len(_COLOURS)]
      draw.rectangle([x, 30, x + 10, 40], fill=c)
      draw.text((x + 14, 35), f"vs {m}", fill="black", font=small, anchor="lm")
      x += 24 + int(draw.textlength(f"vs {m}", font=small))
  several_deltas = len({e["delta"] for e in result["edits"]}) > 1
  for i, e in enumerate(rows):
    x0 = left + gap + i * (bar + gap)
    c = _COLOURS[methods.index(e["method"]) % len(_COLOURS)]
    if e["attribute"] == "all":
      c = tuple(int(0.6 * v) for v in c)
    draw.rectangle([x0, y(e["fraction"]), x0 + bar, y(0)], fill=c)
    lo, hi = e["fraction_ci"]
    xm = x0 + bar // 2
    draw.line([(xm, y(lo)), (xm, y(hi))], fill="black", width=2)
    for f in (lo, hi):
      draw.line([(xm - 6, y(f)), (xm + 6, y(f))], fill="black", width=2)
    ratio = "inf" if e["ratio"] is None else f"{e['ratio']:.2f}"  # the default font has no ∞
    draw.text((xm, y(hi) - 4), ratio, fill="black", font=small, anchor="md")
    label = e["attribute"].replace("_", " ")
    draw.text((xm, y(0) + 6), label, fill="black", font=small, anchor="ma")
    sub = f"n={e['n']}" + (f" δ={e['delta']:g}" if several_deltas and e["delta"] is not None
                           else "")
    draw.text((xm, y(0) + 22), sub, fill=(90, 90, 90), font=small, anchor="ma")
  draw.text((left, top + height + 44), "numbers above bars: ratio DFI : baseline (Table 1)",
            fill=(90, 90, 90), font=small)
  image_io.save_png(path, np.asarray(canvas))
