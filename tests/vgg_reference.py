"""An independent NumPy float64 VGG16/VGG19 forward pass: the reference the tests compare with.

Written from the papers' layouts (not from dfi_jax.nets.model): 3x3 SAME convolutions by shifted
sums, ReLU, 2x2/2 max pools in floor or ceil mode, torchvision or Caffe input conventions.
"""

from __future__ import annotations

import numpy as np

# Convolutions per block (VGG16: configuration D, VGG19: configuration E).
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def layout(architecture: str) -> list[str]:
  """Conv names and "pool" entries, in order, up to conv5_1."""
  out = []
  for block, count in enumerate(BLOCKS[architecture], start=1):
    if block > 1:
      out.append("pool")
    out += [f"conv{block}_{c}" for c in range(1, count + 1)]
    if block == 5:
      return out[:out.index("conv5_1") + 1]
  return out


def conv3x3(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
  """SAME 3x3 convolution of `[B, H, W, I]` with HWIO `[3, 3, I, O]`, float64."""
  h, w = x.shape[1:3]
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros(x.shape[:3] + (kernel.shape[3],))
  for dy in range(3):
    for dx in range(3):
      out += np.einsum("bhwc,co->bhwo", padded[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
  return out + bias


def pool(x: np.ndarray, mode: str) -> np.ndarray:
  h, w = x.shape[1:3]
  if mode == "ceil":
    x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
  else:
    x = x[:, :h - h % 2, :w - w % 2]
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def numpy_vgg(images: np.ndarray, params: dict, preprocessing: str, pooling: str,
              architecture: str = "vgg19", taps=("conv3_1", "conv4_1", "conv5_1")) -> dict:
  """Post-ReLU `taps` of `[B, H, W, 3]` RGB in [0, 1]; `params` name -> (HWIO kernel, bias)."""
  x = np.asarray(images, np.float64)
  if preprocessing == "caffe":
    x = x[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
  else:
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  out = {}
  for name in layout(architecture):
    if name == "pool":
      x = pool(x, pooling)
      continue
    kernel, bias = params[name]
    x = np.maximum(conv3x3(x, np.asarray(kernel, np.float64), np.asarray(bias, np.float64)), 0)
    if name in taps:
      out[name] = x
  return out
