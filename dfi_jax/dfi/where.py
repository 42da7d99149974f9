"""Where an edit may change the image, and how: the data-derived "where" mask and the change's
parameterisation inside the reverse map.

The "where" mask m comes from the attribute vector itself, so it exists for any attribute of any
bank: w = mean φ(targets) − mean φ(sources) is a stack of feature maps, and its energy per
location ‖w_l(i, j)‖ (over channels) says where the neighbours that have the attribute differ
from those that lack it. Per tap the energy is divided by its mean over locations (every tap
counts the same), upsampled to the image, averaged over taps, blurred, divided by its maximum
and mapped to [0, 1] by a soft ramp between `low` and `high`.

The change is then parameterised (`decode`): z = clip(base + m ⊙ Δ, 0, 1), with Δ in a
luminance/chroma space (JPEG's YCbCr, linear): chroma at 1/`chroma_scale` of the image's
resolution, upsampled bilinearly, so it cannot carry pixel-scale colour noise; luminance at
1/`luma_scale` of it, or per pixel where the per-pixel map `fine` is 1 (`luma_scale` > 1 keeps
both grids and blends them by `fine`). Where m = 0 the image is exactly `base`.

Which edits need per-pixel luminance is read from the data too (`detail_share`): the neighbours'
mean pixel difference (mean target − mean source, the attribute's own pixel signature) keeps
little energy finer than 2 pixels when the attribute is a smooth change of tone (grey hair), much
when it is thin lines (glasses frames). Coarse luminance takes a speckled one-pixel texture out
of the first and would thin the second. Which edits draw colour at all (`change`'s `colour`) is
read from the same difference (`chroma_share`): a thin shape whose colour is each face's own (a
moustache takes the hair's) leaves almost no chroma in the neighbours' mean.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dfi_jax.dfi import features as features_lib

MODES = ("off", "features")

# JPEG's RGB -> YCbCr (without the offsets: the change is a difference).
YCC_FROM_RGB = np.array([[0.299, 0.587, 0.114],
                          [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]], np.float32)
RGB_FROM_YCC = np.linalg.inv(YCC_FROM_RGB).astype(np.float32)


class WhereConfig(NamedTuple):
  """How the where mask is made from w (see the module docstring)."""
  mode: str = "features"  # off | features (w's energy per location)
  sigma: float = 0.04  # Gaussian blur σ as a fraction of the image side
  low: float = 0.35  # energy (fraction of its maximum) where the mask starts rising from 0
  high: float = 0.7  # energy where it reaches 1


def _gaussian_blur(maps: jax.Array, sigma: float) -> jax.Array:
  """`[B, H, W]` blurred separably with a Gaussian of σ pixels (edges: reflected)."""
  if sigma <= 0:
    return maps
  radius = int(np.ceil(3 * sigma))
  t = np.arange(-radius, radius + 1, dtype=np.float32)
  kernel = np.exp(-0.5 * (t / sigma) ** 2)
  kernel = jnp.asarray(kernel / kernel.sum())
  padded = jnp.pad(maps, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
  rows = sum(kernel[i] * padded[:, i:i + maps.shape[1], :] for i in range(len(kernel)))
  return sum(kernel[i] * rows[:, :, i:i + maps.shape[2]] for i in range(len(kernel)))


def energy(w: jax.Array, spec: features_lib.FeatureSpec, image_shape: tuple[int, int],
           sigma: float) -> jax.Array:
  """`[B, D]` attribute vectors -> `[B, H, W]` float32 in [0, 1]: w's energy per location.

  Per tap ‖w_l(i, j)‖ over channels divided by its mean over locations, bilinearly upsampled to
  `image_shape`, averaged over taps, blurred (σ = `sigma` × the image side, pixels) and divided
  by its maximum.
  """
  w = jnp.asarray(w, jnp.float32)
  parts = features_lib.split(w, spec)
  h, wd = image_shape
  total = jnp.zeros((w.shape[0], h, wd), jnp.float32)
  for tap, shape in zip(spec.taps, spec.shapes):
    e = jnp.sqrt(jnp.sum(parts[tap].reshape(w.shape[0], *shape) ** 2, axis=-1))
    e = e / jnp.maximum(jnp.mean(e, axis=(1, 2), keepdims=True), 1e-30)
    total = total + jax.image.resize(e, (w.shape[0], h, wd), "linear")
  total = _gaussian_blur(total / len(spec.taps), sigma * max(h, wd))
  return total / jnp.maximum(jnp.max(total, axis=(1, 2), keepdims=True), 1e-30)


# `energy` compiled once per (layout, image shape, σ): op by op, its first call in a process
# dispatches and compiles each small operation (~4.6 s against ~1.4 s compiled, measured at 64²).
_energy_compiled = jax.jit(energy, static_argnums=(1, 2, 3))


def mask(w: jax.Array, spec: features_lib.FeatureSpec, image_shape: tuple[int, int],
         config: WhereConfig) -> np.ndarray:
  """`[B, D]` attribute vectors -> `[B, H, W]` float32 soft where-masks in [0, 1] (all ones when
  `config.mode` is off)."""
  if config.mode not in MODES:
    raise ValueError(f"where mode must be one of {MODES}, got {config.mode!r}")
  if config.mode == "off":
    return np.ones((len(w), *image_shape), np.float32)
  if not 0 <= config.low < config.high:
    raise ValueError(f"where: expected 0 <= low < high, got {config.low}, {config.high}")
  e = _energy_compiled(w, spec, tuple(image_shape), float(config.sigma))
  return np.asarray(jnp.clip((e - config.low) / (config.high - config.low), 0.0, 1.0))


def zeros(image_shape: tuple[int, int], chroma_scale: int, luma_scale: int = 1) -> dict:
  """The change parameters of no change: luminance `[⌈H/j⌉, ⌈W/j⌉]` (j = `luma_scale`), with
  j > 1 also per-pixel luminance `luma_fine` `[H, W]`, and chroma `[⌈H/k⌉, ⌈W/k⌉, 2]`
  (k = `chroma_scale`)."""
  h, w = image_shape
  j, k = luma_scale, chroma_scale
  params = dict(luma=jnp.zeros((-(-h // j), -(-w // j)), jnp.float32),
                chroma=jnp.zeros((-(-h // k), -(-w // k), 2), jnp.float32))
  if j > 1:
    params["luma_fine"] = jnp.zeros((h, w), jnp.float32)
  return params


def change(params: dict, image_shape: tuple[int, int], fine=0.0, colour=1.0) -> jax.Array:
  """`[H, W, 3]` RGB change Δ from `zeros`-shaped parameters (each upsampled bilinearly).

  `fine` (scalar or `[H, W]` in [0, 1]): with a `luma_fine` grid, the luminance is
  fine ⊙ luma_fine + (1 − fine) ⊙ luma upsampled; where fine is 0 or 1 the unused grid gets no
  gradient, so a solve from zeros never moves it. `colour` (scalar or `[H, W]` in [0, 1])
  multiplies the chroma: at 0 the change is luminance only and the chroma grid gets no gradient.
  """
  h, w = image_shape
  luma, chroma = params["luma"], params["chroma"]
  if luma.shape != (h, w):
    luma = jax.image.resize(luma, (h, w), "linear")
  if "luma_fine" in params:
    luma = fine * params["luma_fine"] + (1.0 - fine) * luma
  if chroma.shape[:2] != (h, w):
    chroma = jax.image.resize(chroma, (h, w, 2), "linear")
  chroma = jnp.asarray(colour, jnp.float32)[..., None] * chroma
  ycc = jnp.concatenate([luma[..., None], chroma], axis=-1)
  return ycc @ jnp.asarray(RGB_FROM_YCC).T


def decode(params: dict, base: jax.Array, where: jax.Array, fine=0.0, colour=1.0) -> jax.Array:
  """z = clip(base + where ⊙ Δ, 0, 1): `base` `[H, W, 3]`, `where`, `fine` and `colour`
  `[H, W]` (see `change`) -> `[H, W, 3]`."""
  return jnp.clip(base + where[..., None] * change(params, base.shape[:2], fine, colour),
                  0.0, 1.0)


def detail_share(difference: np.ndarray, scale: int) -> float:
  """The share of `[H, W, 3]` `difference`'s luminance energy that its box average over
  `scale`² blocks, upsampled bilinearly, does not hold: Σ(Y − up(down(Y)))² / ΣY², in [0, 1]
  (0 when Y's mean square is below 1e-12: no luminance change). H and W are cropped to
  multiples of `scale`."""
  y = np.asarray(difference, np.float64) @ YCC_FROM_RGB[0].astype(np.float64)
  h, w = y.shape[0] // scale * scale, y.shape[1] // scale * scale
  y = y[:h, :w]
  total = float(np.sum(y * y))
  if total <= 1e-12 * y.size:
    return 0.0
  blocks = y.reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))
  smooth = np.asarray(jax.image.resize(blocks, (h, w), "linear"), np.float64)
  return float(min(1.0, np.sum((y - smooth) ** 2) / total))


def chroma_share(difference: np.ndarray) -> float:
  """The share of `[H, W, 3]` `difference`'s energy (in YCbCr) that is chroma:
  Σ(Cb² + Cr²) / Σ(Y² + Cb² + Cr²), in [0, 1] (0 for no change)."""
  ycc = np.asarray(difference, np.float64) @ YCC_FROM_RGB.T.astype(np.float64)
  energy = np.sum(ycc * ycc, axis=(0, 1))
  total = float(np.sum(energy))
  return 0.0 if total <= 1e-12 * ycc[..., 0].size else float((energy[1] + energy[2]) / total)


def relative_mask(magnitude: np.ndarray, low: float, high: float) -> np.ndarray:
  """A map of magnitudes (any shape) -> float32 mask in [0, 1] of the same shape: each value as
  a fraction of the map's maximum, 0 up to `low`, 1 from `high`, linear between (all zeros for
  a zero map). The pixel mask's and own photos' focus ramp (runs/photos.py)."""
  if not 0 <= low < high:
    raise ValueError(f"relative mask: expected 0 <= low < high, got {low}, {high}")
  fraction = magnitude / max(float(np.max(magnitude)), 1e-12)
  return np.clip((fraction - low) / (high - low), 0.0, 1.0).astype(np.float32)


def pixel_mask(difference: np.ndarray, sigma: float, low: float, high: float) -> np.ndarray:
  """`[H, W, 3]` mean pixel difference -> `[H, W]` float32 mask in [0, 1]: its norm over the
  colour channels, blurred (Gaussian, σ = `sigma` pixels), as a `relative_mask` from `low` to
  `high`. Where the neighbours that have the attribute look like those that lack it, the mask
  is 0 (all zeros for a zero difference)."""
  norm = np.sqrt(np.sum(np.asarray(difference, np.float32) ** 2, axis=-1))
  return relative_mask(np.asarray(_gaussian_blur(jnp.asarray(norm)[None], sigma))[0], low, high)


def chroma_highpass(image: np.ndarray, scale: int) -> float:
  """RMS of `[H, W, 3]`'s chroma (Cb, Cr) minus its own box average over `scale`² blocks
  upsampled back: the colour detail finer than `scale` pixels (0 for a change `decode` makes
  with chroma_scale ≥ `scale`, up to the bilinear upsampling's in-block variation)."""
  ycc = np.asarray(image, np.float64) @ YCC_FROM_RGB.T.astype(np.float64)
  chroma = ycc[..., 1:]
  h, w = chroma.shape[:2]
  hh, ww = h // scale * scale, w // scale * scale
  c = chroma[:hh, :ww]
  blocks = c.reshape(hh // scale, scale, ww // scale, scale, 2).mean(axis=(1, 3))
  smooth = np.repeat(np.repeat(blocks, scale, 0), scale, 1)
  return float(np.sqrt(np.mean((c - smooth) ** 2)))
