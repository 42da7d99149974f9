"""3x3 SAME convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016).

Each 6x6 input tile (stride 4) and each 3x3 kernel go to a 6x6 transform domain, where the
convolution is 36 independent matrix products `[tiles, C_in] @ [C_in, C_out]`; the inverse
transform gives a 4x4 output tile. That is 36 multiplies per 16 outputs instead of 16 · 9: 4x
fewer, paid for by the transforms, which cost per element of the input and output rather than
per channel pair. The transforms are one small matrix product each (Kronecker products of the
1-D transforms), and the tiles are cut by reshapes (6 wide-layer stacks, in a loop: the
transforms as sums of slices compiled 4x as long and ran 1.4x slower; the tiles cut as 36
strided slices compiled 4x as long again). On XLA:CPU it is faster than `conv_general_dilated`
from VGG's 64 -> 128 layers on, slower on 3 -> 64 and at 200² on 64 -> 64
(research/winograd_layers.py, docs/benchmarks.md), so `model.winograd_pays` picks the layers. The result equals the direct convolution up to float32 rounding (relative ~1e-5 of the
output's largest value on VGG's layers; `tests/nets/test_winograd.py`).

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


# The tile transforms on the 36 elements of a tile, flattened row-major: V = Bᵀ d B and
# Y = Aᵀ M A as one small matrix each (Kronecker products), applied as matrix products.
_B_KRON = np.kron(B_T, B_T).astype(np.float32)  # [36, 36]
_A_KRON = np.kron(A_T, A_T).astype(np.float32)  # [16, 36]


def _tiles(xp: jax.Array, th: int, tw: int) -> jax.Array:
  """`[N, 4·th + 4, 4·tw + 4, C]` -> `[36, N·th·tw·C]`: the 6x6 tiles at stride 4, element
  (i, j) of every tile in row 6·i + j. Blocks of 4 rows, plus the next block's first 2, then the
  same along columns (reshapes: 36 strided slices compiled 4x slower)."""
  n, _, wp, c = xp.shape
  lower = xp[:, 4:th * OUT + 4].reshape(n, th, OUT, wp, c)[:, :, :2]
  rows = jnp.concatenate([xp[:, :th * OUT].reshape(n, th, OUT, wp, c), lower], axis=2)
  right = rows[:, :, :, 4:tw * OUT + 4].reshape(n, th, TILE, tw, OUT, c)[:, :, :, :, :2]
  tiles = jnp.concatenate([rows[:, :, :, :tw * OUT].reshape(n, th, TILE, tw, OUT, c), right],
                          axis=4)  # [N, th, 6 (i), tw, 6 (j), C]
  return tiles.transpose(2, 4, 0, 1, 3, 5).reshape(TILE * TILE, -1)


def conv3x3(x: jax.Array, u: jax.Array) -> jax.Array:
  """`[N, H, W, I]` float32, `u = kernel_transform(kernel)` -> `[N, H, W, O]` float32: the SAME
  (zero-padded) 3x3 convolution of `x` with `kernel`, stride 1, as `conv_general_dilated` with
  NHWC / HWIO computes it."""
  n, h, w, c = x.shape
  th, tw = -(-h // OUT), -(-w // OUT)
  xp = jnp.pad(x, ((0, 0), (1, th * OUT + 3 - h), (1, tw * OUT + 3 - w), (0, 0)))
  v = jnp.dot(_B_KRON, _tiles(xp, th, tw)).reshape(TILE * TILE, n * th * tw, c)
  m = jnp.einsum("ktc,kco->kto", v, u)  # the 36 products: [36, tiles, O]
  y = jnp.dot(_A_KRON, m.reshape(TILE * TILE, -1)).reshape(OUT, OUT, n, th, tw, -1)
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(n, th * OUT, tw * OUT, -1)[:, :h, :w]
