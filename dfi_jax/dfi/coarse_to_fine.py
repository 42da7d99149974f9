"""Coarse to fine for the reverse map: a first solve at half the size starts the full-size one.

The half-size problem: the image (and its where mask) downsampled, and the target
φ_half(x_half) + the full-size edit direction t − φ(x) downsampled layer by layer (VGG features
are not scale-equivariant, so φ(x)'s maps downsampled are not φ of a smaller image; only the
direction is carried). Its result's change — z − x, or the change's parameters
(`config.parameterised`) — is upsampled bilinearly as the full-size solve's start.

Measured (research/coarse_to_fine.py, docs/benchmarks.md): it lowers the 100-iteration loss at
200² × 1 and raises it at 64² × 18, so `ReverseMapConfig.coarse_iterations` is 0 by default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import where as where_lib


def _resize(a: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  return jax.image.resize(a, shape, "linear", antialias=True)


def half_problem(net, params, spec: features_lib.FeatureSpec, targets, start):
  """The half-size problem of `targets` `[B, D]` from `start` `[B, H, W, 3 or 4]` (image and
  where mask): `(feature spec, targets [B, D_half], start [B, H/2, W/2, 3 or 4])`."""
  b, h, w, c = start.shape
  small = _resize(jnp.asarray(start, jnp.float32), (b, h // 2, w // 2, c))
  half_spec = features_lib.feature_spec(net, params, (h // 2, w // 2))
  if min(min(shape[:2]) for shape in half_spec.shapes) < 1:
    raise ValueError(f"coarse_iterations: the half-size image ({h // 2}x{w // 2}) is too small "
                     f"for the taps {spec.taps}")
  phi = features_lib.make_phi(net)
  direction = features_lib.split(
      jnp.asarray(targets) - phi(params, jnp.asarray(start[..., :3], jnp.float32)), spec)
  parts = [_resize(direction[tap].reshape(b, *shape), (b, *half_shape)).reshape(b, -1)
           for tap, shape, half_shape in zip(spec.taps, spec.shapes, half_spec.shapes)]
  return half_spec, phi(params, small[..., :3]) + jnp.concatenate(parts, axis=-1), small


def upsample_start(half_result, half_start, start, config):
  """The full-size solve's `(z0, start parameters or None)` from the half-size result (a
  `ReverseMapResult`) of `half_start`; `start` is the full-size `[B, H, W, 3 or 4]`."""
  b, h, w, _ = start.shape
  if config.parameterised:
    zeros = where_lib.zeros((h, w), config.chroma_scale, config.luma_scale)
    return start, jax.tree.map(lambda a, full: jax.image.resize(a, (b, *full.shape), "linear"),
                               half_result.solution, zeros)
  change = jnp.asarray(half_result.images) - half_start[..., :3]
  z0 = jnp.clip(jnp.asarray(start[..., :3]) + jax.image.resize(change, (b, h, w, 3), "linear"),
                0.0, 1.0)
  return np.asarray(z0), None


def coarse_start(rm, params, targets, z0, half_map, iterations: int):
  """Solves `rm`'s problem at half size for `iterations` with `half_map(spec)` (a
  `ReverseMap` for the half-size feature layout) and returns the full-size `(z0, start)`."""
  half_spec, half_targets, small = half_problem(rm.net, params, rm.spec, targets, z0)
  result = half_map(half_spec)(params, half_targets, small, iterations)
  return upsample_start(result, small, z0, rm.config)
