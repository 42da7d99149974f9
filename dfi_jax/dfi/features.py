"""φ: the deep feature map DFI interpolates in.

φ(x) is the concatenation of the flattened post-ReLU taps (default conv3_1, conv4_1, conv5_1),
each flattened in HWC order. `FeatureSpec` records the per-tap shapes so a flat `[B, D]` vector
can be split back into layers (the reverse map's loss is a mean over layers).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class FeatureSpec(NamedTuple):
  """Layout of φ for one image size: `shapes[i]` is tap `taps[i]`'s `(h, w, c)`."""
  taps: tuple[str, ...]
  shapes: tuple[tuple[int, int, int], ...]

  @property
  def sizes(self) -> tuple[int, ...]:
    return tuple(int(np.prod(s)) for s in self.shapes)

  @property
  def dim(self) -> int:
    return sum(self.sizes)


def feature_spec(net, params, image_shape: tuple[int, int]) -> FeatureSpec:
  """Shapes of φ's taps for `[H, W]` images (no computation, via `jax.eval_shape`)."""
  x = jax.ShapeDtypeStruct((1, *image_shape, 3), jnp.float32)
  out = jax.eval_shape(lambda p, z: net.apply({"params": p}, z), params, x)
  return FeatureSpec(tuple(net.taps), tuple(tuple(out[t].shape[1:]) for t in net.taps))


def flatten(taps: dict[str, jax.Array], order) -> jax.Array:
  """dict tap -> `[B, h, w, c]` to `[B, D]` in `order`."""
  return jnp.concatenate([taps[t].reshape(taps[t].shape[0], -1) for t in order], axis=-1)


def split(flat: jax.Array, spec: FeatureSpec) -> dict[str, jax.Array]:
  """`[..., D]` -> dict tap -> `[..., h*w*c]` (flat per layer)."""
  bounds = np.cumsum((0,) + spec.sizes)
  return {t: flat[..., bounds[i]:bounds[i + 1]] for i, t in enumerate(spec.taps)}


def make_phi(net) -> Callable[[dict, jax.Array], jax.Array]:
  """Jitted φ: `(params, images [B, H, W, 3] float32 in [0, 1]) -> [B, D] float32`."""

  @jax.jit
  def phi(params, images):
    return flatten(net.apply({"params": params}, images), net.taps)

  return phi


def compute_features(phi, params, images: np.ndarray, batch_size: int = 32,
                     dtype=np.float32, progress: Callable[[int], None] | None = None
                     ) -> np.ndarray:
  """φ of `[N, H, W, 3]` images in fixed-size batches (the last one padded, so one compile).

  Returns `[N, D]` NumPy array of `dtype`.
  """
  n = len(images)
  out = None
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad and n > batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    feats = np.asarray(phi(params, jnp.asarray(chunk, jnp.float32)))[:min(batch_size, n - start)]
    if out is None:
      out = np.empty((n, feats.shape[1]), dtype)
    out[start:start + len(feats)] = feats
    if progress is not None:
      progress(len(feats))
  return out
