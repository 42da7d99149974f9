"""3x3 SAME convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016).

Each 6x6 input tile (stride 4) and each 3x3 kernel go to a 6x6 transform domain, where the
convolution is 36 independent matrix products `[tiles, C_in] @ [C_in, C_out]`; the inverse
transform gives a 4x4 output tile. That is 36 multiplies per 16 outputs instead of 16 · 9: 4x
fewer, paid for by the transforms, which cost per element of the input and output rather than
per channel pair. On XLA:CPU it is faster than `conv_general_dilated` where both channel counts
are large (>= 256 on VGG's layers, docs/benchmarks.md) and slower below, so `model.py` uses it
only there. The result equals the direct convolution up to float32 rounding (relative ~2e-5 of
the output's largest value on VGG's layers; `tests/nets/test_winograd.py`).

Pure functions; the kernel transform is done once per kernel, outside any solver loop
(`model.backward_kernels`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# F(4x4, 3x3) with interpolation points 0, ±1, ±2, ∞ (the transform matrices of Lavin & Gray).
B_T = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float64)
OUT = 4  # output tile side
TILE = OUT + 2  # input tile side


def kernel_transform(kernel: jax.Array) -> jax.Array:
  """`[3, 3, I, O]` float32 -> `[36, I, O]` float32: G · k · Gᵀ per channel pair."""
  g = jnp.asarray(G, jnp.float32)
  u = jnp.einsum("ik,klco,jl->ijco", g, kernel.astype(jnp.float32), g,
                 precision=jax.lax.Precision.HIGHEST)
  return u.reshape((TILE * TILE,) + kernel.shape[2:])


def _combine(coefficients, terms):
  """Σ c · t over the non-zero coefficients, as elementwise ops XLA fuses (no tiny matmuls)."""
  out = None
  for c, t in zip(coefficients, terms):
    if c == 0:
      continue
    term = t if c == 1 else -t if c == -1 else float(c) * t
    out = term if out is None else out + term
  return out


def conv3x3(x: jax.Array, u: jax.Array) -> jax.Array:
  """`[N, H, W, I]` float32, `u = kernel_transform(kernel)` -> `[N, H, W, O]` float32: the SAME
  (zero-padded) 3x3 convolution of `x` with `kernel`, stride 1, as `conv_general_dilated` with
  NHWC / HWIO computes it."""
  n, h, w, c = x.shape
  th, tw = -(-h // OUT), -(-w // OUT)
  xp = jnp.pad(x, ((0, 0), (1, th * OUT + 1 - h), (1, tw * OUT + 1 - w), (0, 0)))
  d = [[xp[:, i:i + th * OUT:OUT, j:j + tw * OUT:OUT, :] for j in range(TILE)]
       for i in range(TILE)]  # d[i][j]: [N, th, tw, I], element (i, j) of every tile
  rows = [[_combine(B_T[q], d[r]) for q in range(TILE)] for r in range(TILE)]
  v = jnp.stack([_combine(B_T[p], [rows[r][q] for r in range(TILE)])
                 for p in range(TILE) for q in range(TILE)])
  m = jnp.einsum("ktc,kco->kto", v.reshape(TILE * TILE, n * th * tw, c), u)
  m = m.reshape(TILE, TILE, n, th, tw, -1)
  cols = [[_combine(A_T[q], [m[r, s] for s in range(TILE)]) for q in range(OUT)]
          for r in range(TILE)]
  y = jnp.stack([jnp.stack([_combine(A_T[p], [cols[r][q] for r in range(TILE)])
                            for q in range(OUT)], axis=3) for p in range(OUT)], axis=2)
  return y.reshape(n, th * OUT, tw * OUT, -1)[:, :h, :w]
