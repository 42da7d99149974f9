"""A generated face's identity and attributes: `FaceParams`, drawn from a seed by `sample_face`."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np


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
GREY_HAIR = (0.86, 0.86, 0.84)


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
  return rgb_tuple(np.clip(base + rng.uniform(-jitter, jitter, 3), 0.0, 1.0))


def rgb_tuple(x) -> RGB:
  return tuple(float(v) for v in x)


def sample_face(seed: int) -> FaceParams:
  """Draws an identity and its attributes, deterministically from `seed`.

  Args:
    seed: non-negative int, passed to `np.random.default_rng`.

  Returns:
    The `FaceParams`; attributes are independent Bernoulli draws with `ATTRIBUTE_PROBS`.
  """
  rng = np.random.default_rng(seed)  # every draw below in this order: a seed's face is fixed
  probs = np.array([ATTRIBUTE_PROBS[a] for a in ATTRIBUTES])
  attributes = tuple(bool(b) for b in rng.random(len(ATTRIBUTES)) < probs)
  colours = _colours(rng)
  nose_length = rng.uniform(0.34, 0.44)
  head = _head(rng, colours)
  middle = _eyes_nose_mouth(rng, colours, nose_length)
  scene = _scene(rng, colours)
  return FaceParams(**head, **middle, **scene, attributes=attributes, seed=int(seed))


def _colours(rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Skin (a light-to-dark tone), lips (from the skin), shirt and background: `[3]` each."""
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
  return dict(skin=skin, lip=lip, shirt=shirt, background=background)


def _head(rng: np.random.Generator, colours: dict) -> dict:
  """Placement, head shape, skin, hair and brows (`FaceParams` fields `centre_x`…`brow_tilt`)."""
  u = rng.uniform
  return dict(
      centre_x=0.5 + u(-0.025, 0.025),
      eye_line=0.40 + u(-0.02, 0.02),
      scale=u(0.92, 1.08),
      face_width=u(0.205, 0.24),
      face_height=u(0.28, 0.315),
      jaw=u(0.05, 0.25),
      skin=rgb_tuple(colours["skin"]),
      hair=_rgb(rng, _HAIR_PALETTE, 0.04),
      hair_style=int(rng.integers(len(HAIR_STYLES))),
      hairline=u(0.52, 0.66),
      hair_part=u(-0.3, 0.3),
      brow_thickness=u(0.045, 0.095),
      brow_height=u(0.17, 0.24),
      brow_arch=u(0.015, 0.06),
      brow_tilt=u(-0.03, 0.03))


def _eyes_nose_mouth(rng: np.random.Generator, colours: dict, nose_length: float) -> dict:
  """Eyes, nose, mouth and ears (`FaceParams` fields `eye_spacing`…`ear_size`)."""
  u = rng.uniform
  return dict(
      eye_spacing=u(0.4, 0.48),
      eye_size=u(0.18, 0.23),
      eye_aspect=u(0.45, 0.6),
      iris=_rgb(rng, _IRIS_PALETTE, 0.05),
      nose_length=nose_length,
      nose_width=u(0.15, 0.22),
      mouth_width=u(0.38, 0.5),
      mouth_height=nose_length + u(0.25, 0.31),
      lip_thickness=u(0.15, 0.25),
      lip=rgb_tuple(colours["lip"]),
      ear_size=u(0.85, 1.15))


def _scene(rng: np.random.Generator, colours: dict) -> dict:
  """Shirt, background, light, glasses and moustache styles (`FaceParams` fields
  `shirt`…`moustache_style`)."""
  u = rng.uniform
  background = colours["background"]
  return dict(
      shirt=rgb_tuple(np.clip(colours["shirt"], 0, 1)),
      neckline=int(rng.integers(len(NECKLINES))),
      background=rgb_tuple(background),
      background2=rgb_tuple(np.clip(background * u(0.55, 0.9) + u(-0.05, 0.05, 3), 0, 1)),
      background_angle=u(0, 2 * math.pi),
      light_angle=u(0, 2 * math.pi),
      light_strength=u(0.1, 0.3),
      glasses_style=int(rng.integers(len(GLASSES_STYLES))),
      glasses_colour=_rgb(rng, _FRAME_PALETTE, 0.03),
      glasses_thickness=u(0.03, 0.05),
      moustache_style=int(rng.integers(len(MOUSTACHE_STYLES))))


def check_attribute_names(names) -> None:
  unknown = [n for n in names if n not in ATTRIBUTES]
  if unknown:
    raise ValueError(f"unknown attribute(s) {unknown}; valid attributes are {ATTRIBUTES}")


def with_attributes(params: FaceParams, **values: bool) -> FaceParams:
  """Returns `params` with the named attributes set, e.g. `with_attributes(p, smiling=True)`.

  Raises:
    ValueError: a name is not in `ATTRIBUTES` (the message lists them).
  """
  check_attribute_names(values)
  attrs = tuple(bool(values.get(a, v)) for a, v in zip(ATTRIBUTES, params.attributes))
  return dataclasses.replace(params, attributes=attrs)
