"""The docs' photo strips: a photo's input and its edits, side² crops of the full-size outputs.

  python tools/photo_strip.py --run=DIR --photo=astronaut --center=216,110 --side=184 \
      --out=docs/photo_astronaut.png

reads `DIR/originals/<photo>.png` and `DIR/edits/<photo>__<attribute>__d<δ>.png` (an
`experiments.transform --inputs=…` run), crops each around `center` (x, y in the photo's pixels)
and writes one labelled row. The README's strips: the astronaut at 216,110 side 184, Grace Hopper
at 266,228 side 220.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfi_jax.outputs import figures  # noqa: E402
from dfi_jax.outputs import names  # noqa: E402

ATTRIBUTES = ("older", "mouth_open", "eyes_open", "smiling", "moustache", "eyeglasses")


def crop(image: np.ndarray, center: tuple[int, int], side: int) -> np.ndarray:
  """`[side, side, 3]` of `image` `[H, W, 3]` around `center` (x, y); raises ValueError when the
  square leaves the image."""
  x0, y0 = center[0] - side // 2, center[1] - side // 2
  if x0 < 0 or y0 < 0 or x0 + side > image.shape[1] or y0 + side > image.shape[0]:
    raise ValueError(f"a {side}² square around {center} leaves the {image.shape[1]}×"
                     f"{image.shape[0]} image")
  return image[y0:y0 + side, x0:x0 + side]


def read(path: Path) -> np.ndarray:
  if not path.is_file():
    raise ValueError(f"{path}: no such file; expected an experiments.transform run's output")
  return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0


def main(argv: list[str] | None = None) -> int:
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run", required=True, help="the transform run's workdir")
  parser.add_argument("--photo", required=True, help="the photo's name (its file stem)")
  parser.add_argument("--center", required=True, help="x,y of the crop's centre")
  parser.add_argument("--side", type=int, required=True, help="the crop's side in pixels")
  parser.add_argument("--delta", type=float, default=3.5, help="the edits' δ")
  parser.add_argument("--attributes", default=",".join(ATTRIBUTES))
  parser.add_argument("--out", required=True, help="the PNG to write")
  args = parser.parse_args(argv)
  try:
    center = tuple(int(v) for v in args.center.split(","))
    if len(center) != 2:
      raise ValueError
  except ValueError:
    parser.error(f"--center={args.center}: expected x,y (two integers)")
  run, attributes = Path(args.run), [a for a in args.attributes.split(",") if a]
  try:
    tiles = [crop(read(run / "originals" / f"{args.photo}.png"), center, args.side)]
    for a in attributes:
      tiles.append(crop(read(run / names.edit_name(args.photo, a, args.delta)), center,
                        args.side))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  figures.save_grid(args.out, [tiles], col_labels=["input"] + [f"{a} d={args.delta:g}"
                                                               for a in attributes])
  return 0


if __name__ == "__main__":
  sys.exit(main())
