"""Drawing a face: its display lists back to front, lighting, blur and noise, and the masks."""

from __future__ import annotations

import itertools
import math
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageDraw

from dfi_jax.data.faces.geometry import Layout, Op, draw_op, landmarks, layout
from dfi_jax.data.faces.head import (
    clothes, ears, face_skin, forehead_wrinkles, hair_back, hair_front, neck_ops)
from dfi_jax.data.faces.params import (
    ATTRIBUTES, Face, FaceParams, MAX_SIZE, MIN_SIZE, NOISE_SIGMA, check_attribute_names,
    sample_face, with_attributes)
from dfi_jax.data.faces.parts import (
    brows, cheeks, eye_sockets, eyes, face_wrinkles, glasses, moustache, mouth, nose)


def counterfactual(params: FaceParams, attribute: str, size: int) -> Face:
  """Renders the same identity (same texture, lighting, noise) with `attribute` toggled."""
  check_attribute_names([attribute])
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


class _Feature(NamedTuple):
  name: str
  deps: tuple[str, ...]     # the only attributes `build` may read
  build: Callable[[Layout, FaceParams, Mapping[str, bool]], list[Op]]


# Drawn in this order (back to front).
_FEATURES: tuple[_Feature, ...] = (
    _Feature("hair_back", ("older",), hair_back),
    _Feature("neck", (), neck_ops),
    _Feature("clothes", (), clothes),
    _Feature("ears", (), ears),
    _Feature("face", (), face_skin),
    _Feature("forehead_wrinkles", ("older",), forehead_wrinkles),
    _Feature("hair_front", ("older",), hair_front),
    _Feature("eye_sockets", (), eye_sockets),
    _Feature("brows", ("older",), brows),
    _Feature("eyes", ("eyes_open",), eyes),
    _Feature("nose", (), nose),
    _Feature("cheeks", ("smiling",), cheeks),
    _Feature("face_wrinkles", ("older",), face_wrinkles),
    _Feature("mouth", ("mouth_open", "smiling"), mouth),
    _Feature("moustache", ("moustache", "older"), moustache),
    _Feature("glasses", ("eyeglasses",), glasses),
)


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


def _shading(p: FaceParams, lay: Layout, face: np.ndarray) -> np.ndarray:
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


def _face_coverage(p: FaceParams, lay: Layout, ss: int, width: int) -> np.ndarray:
  """`[S, S]` float32 in [0, 1]: the face silhouette not covered by opaque front hair.

  Identity-only (hair geometry does not depend on `older`), so shading by it keeps the
  counterfactual guarantee.
  """
  layer = Image.new("L", (width, width), 0)
  draw = ImageDraw.Draw(layer)
  for op in face_skin(lay, p, {}):
    draw_op(draw, op, width, ink=255)
  for op in hair_front(lay, p, {"older": False}):
    if (op.fill or (0, 0, 0, 0))[3] == 255:
      draw_op(draw, op, width, ink=0)
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
  return landmarks(layout(params), int(size))


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
  lay = layout(params)
  values = dict(zip(ATTRIBUTES, params.attributes))
  cache: dict[tuple[str, tuple[bool, ...]], list[Op]] = {}

  def ops_for(feature: _Feature, combo: tuple[bool, ...]) -> list[Op]:
    key = (feature.name, combo)
    if key not in cache:
      cache[key] = feature.build(lay, params, dict(zip(feature.deps, combo)))
    return cache[key]

  canvas = _background(params, size, width)
  draw = ImageDraw.Draw(canvas, "RGBA")
  for feature in _FEATURES:
    for op in ops_for(feature, tuple(bool(values[d]) for d in feature.deps)):
      draw_op(draw, op, width)
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
            draw_op(mdraw, op, width, ink=255)
    masks[attribute] = _dilate(np.asarray(layer.reduce(ss)) > 0, blur)
  return Face(image=image, masks=masks, landmarks=landmarks(lay, size))
