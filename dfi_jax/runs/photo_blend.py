"""How an own photo's face change is pasted back: its light and dark, where it is strong.

The bank's faces are generated cartoons: their colour differences (skin, lips) do not carry
over to a real face, their light and dark shapes do, and a 64²-128² change upsampled into a face
100-300 px wide spreads its weak tail. `blended_change` turns a face's change (edit − crop) into
what `photos.paste` adds: the chroma scaled by `Blend.chroma`, and with `Blend.focus` the whole
change kept only where its own blurred luminance magnitude is strong (the reverse map's own
"where"), that magnitude mirrored about the face's midline first (`Blend.mirror`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.ndimage

from dfi_jax.dfi import where as where_lib


class Blend(NamedTuple):
  """How a face's change is pasted back (besides the face mask).

  The bank's faces are generated: their colour differences (a cartoon's skin and lips) do not
  carry over to a real face, their light and dark shapes do, so only `chroma` × the change's
  chroma is pasted (the luminance in full). With `focus`, the change is also kept only where it
  is strong: its own luminance magnitude, blurred (σ = `FOCUS_SIGMA` × the crop side) and
  divided by its maximum, ramped from 0 at `low` to 1 at `high` — the reverse map's own "where".
  With `mirror` (the face's vertical midline, crop x in pixels) the magnitude is first the larger
  of itself and its mirror image about that line: a face's two eyes, two mouth corners, two lenses
  are kept or dropped together, where the weaker side kept only what reached `low` of the
  stronger side's maximum.
  The default (no focus, full chroma) pastes the change as it is.
  """
  focus: bool = False
  low: float = 0.6  # config.photo_focus_low
  high: float = 0.9  # config.photo_focus_high
  chroma: float = 1.0
  mirror: float | None = None  # config.photo_focus_mirror: the frame's midline


FOCUS_SIGMA = 0.025


def blend_for(config, midline: float | None = None) -> Blend:
  """A run's `Blend`: focus with the `photo_focus_low`..`photo_focus_high` ramp unless
  `config.where` is off, mirrored about `midline` (the frame's, crop x) when
  `config.photo_focus_mirror`. The ramp is the photo's own, not the where mask's: a 64² change
  pasted into a face 100-300 px wide spreads its weak tail (issue 22: at the where mask's
  0.35-0.7 the astronaut's eyeglasses changed the rest of the face by 5.2/255)."""
  mirror = config.get("photo_focus_mirror", True)
  return Blend(focus=config.get("where", "off") != "off",
               low=config.get("photo_focus_low", Blend._field_defaults["low"]),
               high=config.get("photo_focus_high", Blend._field_defaults["high"]),
               chroma=config.get("photo_chroma", 1.0),
               mirror=midline if mirror else None)


def mirrored(image: np.ndarray, midline: float) -> np.ndarray:
  """`[H, W]` -> `[H, W]`: `image` reflected about the vertical line x = `midline` (pixels,
  linear interpolation; what falls outside the image is 0)."""
  flipped = np.asarray(image, np.float32)[:, ::-1]
  return scipy.ndimage.shift(flipped, (0.0, 2.0 * midline - (image.shape[1] - 1)), order=1,
                             mode="constant", cval=0.0)


def blended_change(square: np.ndarray, edit: np.ndarray, blend: Blend) -> np.ndarray:
  """`[S, S, 3]` the change (edit − crop) as `blend` pastes it."""
  change = np.asarray(edit, np.float32) - square
  if blend.chroma == 1.0 and not blend.focus:
    return change
  ycc = change @ where_lib.YCC_FROM_RGB.T
  ycc[..., 1:] *= blend.chroma
  if blend.focus:
    energy = scipy.ndimage.gaussian_filter(np.abs(ycc[..., 0]), FOCUS_SIGMA * square.shape[0])
    if blend.mirror is not None:
      energy = np.maximum(energy, mirrored(energy, blend.mirror))
    ycc *= where_lib.relative_mask(energy, blend.low, blend.high)[..., None]
  return (ycc @ where_lib.RGB_FROM_YCC.T).astype(np.float32)
