"""The judge's training augmentation: geometry, blur, JPEG-like loss, colour noise, patches."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import ndimage

from dfi_jax.eval import judge as judge_lib


PATCH_TRIES = 2  # tries at a patch of high-frequency colour noise per image


class Augmentation(NamedTuple):
  """Strengths of `augment`'s label-preserving transforms: floats, so a pytree `augment` can
  take traced (one compiled function serves every strength).

  `p_*` are probabilities per image; ranges are uniform. At most one degradation (blur, down-up
  resize or JPEG-like blocks) per image, so none compounds into a face nobody could label.
  """
  shift: float = 4.0  # max translation, px at the judge's input size
  scale: float = 0.1  # zoom in [1 - scale, 1 + scale]
  rotation: float = 10.0  # max rotation, degrees
  p_flip: float = 0.5  # mirror (frontal faces: every label is mirror-safe)
  p_blur: float = 0.2
  blur_sigma: float = 0.9  # Gaussian blur sigma in [0.3, blur_sigma] px
  p_down_up: float = 0.15  # resize down to 3/4 or 1/2 of the side and back
  p_jpeg: float = 0.15
  jpeg_strength: float = 0.6  # quantisation steps of 8x8 DCT blocks, times U(0.15, 1)
  brightness: float = 0.1  # added, in [-brightness, brightness]
  contrast: float = 0.25  # around the image mean, factor in [1 - contrast, 1 + contrast]
  saturation: float = 0.25  # mix with grey, factor in [1 - saturation, 1 + saturation]
  channel_gain: float = 0.06  # per-channel factor in [1 - gain, 1 + gain]
  tone: float = 0.25  # tone curve x + t·x·(1 - x), t in [-tone, tone] (a gamma-like bend)
  p_noise: float = 0.5
  noise_sigma: float = 0.07  # Gaussian pixel noise sigma in [0, noise_sigma]
  p_patch: float = 0.4  # probability of each of `PATCH_TRIES` colour-noise patches
  patch_amplitude: float = 0.25  # patch noise sigma in [0.03, patch_amplitude]
  # Colour noise inside the image's region (an attribute's mask, see `render`), where a DFI
  # edit paints: the label stays, so noise there must not read as the attribute.
  p_region: float = 0.3
  region_amplitude: float = 0.15  # its sigma in [0.02, region_amplitude]


def _geometric(key: jax.Array, image: jax.Array, aug: Augmentation) -> jax.Array:
  """A random similarity transform (and mirror) of one `[S, S, 3]` image, edges repeated."""
  s = image.shape[0]
  k1, k2, k3, k4 = jax.random.split(key, 4)
  angle = jnp.deg2rad(jax.random.uniform(k1, (), minval=-aug.rotation, maxval=aug.rotation))
  zoom = jax.random.uniform(k2, (), minval=1 - aug.scale, maxval=1 + aug.scale)
  shift = jax.random.uniform(k3, (2,), minval=-aug.shift, maxval=aug.shift)
  flip = jax.random.bernoulli(k4, aug.p_flip)
  c = (s - 1) / 2
  rows, cols = jnp.meshgrid(jnp.arange(s, dtype=jnp.float32), jnp.arange(s, dtype=jnp.float32),
                            indexing="ij")
  y, x = rows - c - shift[0], cols - c - shift[1]
  cos, sin = jnp.cos(angle) / zoom, jnp.sin(angle) / zoom
  src_y = cos * y - sin * x + c
  src_x = sin * y + cos * x + c
  src_x = jnp.where(flip, s - 1 - src_x, src_x)
  warp = lambda channel: ndimage.map_coordinates(channel, [src_y, src_x], order=1,
                                                 mode="nearest")
  return jax.vmap(warp, in_axes=2, out_axes=2)(image)


def _blur(image: jax.Array, sigma: jax.Array, radius: int = 3) -> jax.Array:
  """Separable Gaussian blur of one `[S, S, 3]` image (traced `sigma` px), edges repeated."""
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  w = jnp.exp(-taps ** 2 / (2 * sigma ** 2))
  w = w / w.sum()
  s = image.shape[0]
  for axis in (0, 1):
    pad = [(0, 0)] * 3
    pad[axis] = (radius, radius)
    padded = jnp.pad(image, pad, mode="edge")
    image = sum(w[i] * jax.lax.slice_in_dim(padded, i, i + s, axis=axis)
                for i in range(2 * radius + 1))
  return image


def _dct_matrix(n: int = 8) -> np.ndarray:
  k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
  m[0] /= np.sqrt(2)
  return m.astype(np.float32)  # orthonormal DCT-II: rows are the basis


_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                 [0.5, -0.418688, -0.081312]], np.float32)


def _jpeg_like(image: jax.Array, strength: jax.Array) -> jax.Array:
  """JPEG-like blocking of one `[S, S, 3]` image (S a multiple of 8): YCbCr, 8x8 DCT, rounding
  to steps that grow with frequency (chroma twice as coarse) times `strength`, inverse."""
  s = image.shape[0]
  d = jnp.asarray(_dct_matrix())
  ycc = image @ jnp.asarray(_YCC).T
  blocks = ycc.reshape(s // 8, 8, s // 8, 8, 3)
  coef = jnp.einsum("ui,aibjc,vj->abuvc", d, blocks, d)
  u = jnp.arange(8, dtype=jnp.float32)
  freq = u[:, None] + u[None, :]
  step = strength * (0.02 + 0.03 * freq)[..., None] * jnp.array([1.0, 2.0, 2.0])
  coef = jnp.round(coef / step) * step
  blocks = jnp.einsum("ui,abuvc,vj->aibjc", d, coef, d)
  return blocks.reshape(s, s, 3) @ jnp.asarray(np.linalg.inv(_YCC)).T


def _colour_noise(key: jax.Array, noise: jax.Array, where: jax.Array, low: float,
                  high: float) -> jax.Array:
  """`noise` `[S, S, 3]` N(0, 1), per pixel or in 2x2 blocks (even odds), times an amplitude in
  [low, high], inside `where` `[S, S]` bool; zero elsewhere."""
  s = noise.shape[0]
  k1, k2 = jax.random.split(key)
  coarse = jnp.repeat(jnp.repeat(noise[::2, ::2], 2, 0), 2, 1)[:s, :s]
  noise = jnp.where(jax.random.bernoulli(k1), noise, coarse)
  amplitude = jax.random.uniform(k2, (), minval=low, maxval=high)
  return jnp.where(where[..., None], amplitude * noise, 0.0)


def _noise_patch(key: jax.Array, noise: jax.Array, aug: Augmentation) -> jax.Array:
  """`_colour_noise` inside a random rectangle, with probability `aug.p_patch`."""
  s = noise.shape[0]
  k1, k2, k3, k4 = jax.random.split(key, 4)
  centre = jax.random.uniform(k1, (2,), minval=0, maxval=s)
  half = jax.random.uniform(k2, (2,), minval=2, maxval=s / 5)
  r = jnp.arange(s, dtype=jnp.float32)
  inside = ((jnp.abs(r[:, None] - centre[0]) <= half[0])
            & (jnp.abs(r[None, :] - centre[1]) <= half[1]))
  on = jax.random.bernoulli(k3, aug.p_patch)
  return _colour_noise(k4, noise, on & inside, 0.03, aug.patch_amplitude)


def noise_bank(key: jax.Array, size: int, count: int = 64) -> jax.Array:
  """`[count, 2·size, 2·size, 3]` float32 N(0, 1): `augment` cuts its noise fields from it.

  Drawing fresh normals for every pixel of every batch costs as much as the judge's gradient on
  a CPU; a random image and window of a bank gives count·size² distinct fields for free.
  """
  return jax.random.normal(key, (count, 2 * size, 2 * size, 3))


def _noise_fields(key: jax.Array, bank: jax.Array, s: int, n: int) -> list[jax.Array]:
  """`n` `[s, s, 3]` windows of `bank` at random images and offsets."""
  k1, k2 = jax.random.split(key)
  which = jax.random.randint(k1, (n,), 0, bank.shape[0])
  offsets = jax.random.randint(k2, (n, 2), 0, bank.shape[1] - s + 1)
  return [jax.lax.dynamic_slice(bank[which[i]], (offsets[i, 0], offsets[i, 1], 0), (s, s, 3))
          for i in range(n)]


def _augment_one(key: jax.Array, image: jax.Array, region: jax.Array, bank: jax.Array,
                 aug: Augmentation) -> jax.Array:
  s = image.shape[0]
  keys = jax.random.split(key, 16)
  u = lambda k, lo, hi, shape=(): jax.random.uniform(k, shape, minval=lo, maxval=hi)
  fields = _noise_fields(keys[10], bank, s, 2 + PATCH_TRIES)
  # Region noise first, so the geometric transform moves it with the face.
  k_on, k_noise = jax.random.split(keys[15])
  on = jax.random.bernoulli(k_on, aug.p_region)
  image = jnp.clip(image + _colour_noise(k_noise, fields[-1], on & region, 0.02,
                                         aug.region_amplitude), 0.0, 1.0)
  image = _geometric(keys[0], image, aug)
  # At most one degradation: 0 none, 1 blur, 2 down-up, 3 JPEG-like.
  degraded = [image, _blur(image, u(keys[1], 0.3, aug.blur_sigma))]
  halves = [judge_lib.resize(judge_lib.resize(image[None], int(s * f)), s)[0]
            for f in (0.75, 0.5)]
  degraded.append(jnp.where(jax.random.bernoulli(keys[2]), halves[0], halves[1]))
  degraded.append(_jpeg_like(image, aug.jpeg_strength * u(keys[3], 0.15, 1.0)) if s % 8 == 0
                  else image)
  probs = jnp.array([1 - aug.p_blur - aug.p_down_up - aug.p_jpeg, aug.p_blur, aug.p_down_up,
                     aug.p_jpeg])
  which = jax.random.choice(keys[4], 4, p=probs)
  image = jnp.select([which == i for i in range(4)], degraded)
  # Colour.
  grey = image @ jnp.array([0.299, 0.587, 0.114])
  sat = u(keys[5], 1 - aug.saturation, 1 + aug.saturation)
  image = grey[..., None] + sat * (image - grey[..., None])
  mean = grey.mean()
  image = mean + u(keys[6], 1 - aug.contrast, 1 + aug.contrast) * (image - mean)
  image = image * u(keys[7], 1 - aug.channel_gain, 1 + aug.channel_gain, (3,))
  image = jnp.clip(image + u(keys[8], -aug.brightness, aug.brightness), 0.0, 1.0)
  image = image + u(keys[9], -aug.tone, aug.tone) * image * (1 - image)
  # Noise.
  sigma = u(keys[11], 0.0, aug.noise_sigma) * jax.random.bernoulli(keys[12], aug.p_noise)
  image = image + sigma * fields[0]
  for k, field in zip(jax.random.split(keys[13], PATCH_TRIES), fields[1:-1]):
    image = image + _noise_patch(k, field, aug)
  return jnp.clip(image, 0.0, 1.0)


def augment(key: jax.Array, images: jax.Array, aug: Augmentation,
            bank: jax.Array | None = None, regions: jax.Array | None = None) -> jax.Array:
  """Label-preserving random transforms of a batch.

  Args:
    key: PRNG key.
    images: `[B, S, S, 3]` float32 in [0, 1].
    aug: the strengths.
    bank: `noise_bank(·, S)` to cut noise from; None draws one (slow: pass one when training).
    regions: `[B, S, S]` bool, where each image may get region noise (None: nowhere).

  Returns:
    `[B, S, S, 3]` float32 in [0, 1]: per image maybe colour noise in its region; a similarity
    transform (shift, zoom, rotation) and mirror; maybe one of a blur, a down-up resize or
    JPEG-like blocks; colour jitter (saturation, contrast, channel gains, brightness, tone
    curve); maybe Gaussian pixel noise and patches of high-frequency colour noise.
  """
  key, bank_key = jax.random.split(key)
  if bank is None:
    bank = noise_bank(bank_key, images.shape[1], count=8)
  if regions is None:
    regions = jnp.zeros(images.shape[:3], bool)
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(_augment_one, in_axes=(0, 0, 0, None, None))(keys, images, regions, bank, aug)
