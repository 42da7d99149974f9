"""VGG16/VGG19 feature network in Flax, up to a chosen layer, with named post-ReLU taps.

One module, `VGG`, holds both layouts (`architecture="vgg16"` or `"vgg19"`): they differ only in
the number of convolutions per block (VGG16: 2, 2, 3, 3, 3; VGG19: 2, 2, 4, 4, 4). A weights file
records its architecture (see `weights.py`); taps, `min_image_size` and FLOP counts take it from
there.

Conventions:
  * Input `images`: `[B, H, W, 3]` float32, RGB in [0, 1]. Preprocessing (torchvision's RGB
    mean/std, or Caffe's BGR 0-255 minus mean) happens inside the network, so every caller
    passes plain [0, 1] images.
  * Kernels are HWIO (Flax); a tap named `conv3_1` is the activation *after* that conv's ReLU
    (the official code's relu3_1).
  * Pooling is 2x2/2 max pooling, either `floor` (torchvision, Flax VALID) or `ceil` (Caffe:
    odd sizes keep their last row/column).

Convolutions have a custom VJP whose input gradient is a plain convolution with a kernel that
was flipped and in/out-swapped *outside* any solver loop (passed in through the `backward`
variable collection, see `backward_kernels`). XLA on CPU otherwise keeps the input-gradient
convolutions of a while-loop body on a slow `reverse`d-kernel path (~3x slower, see
docs/benchmarks.md). Gradients are identical either way. Where a convolution's channel counts
make the transforms pay (`winograd_pays`), `backward_kernels(params, winograd=True)` passes its
kernels' Winograd transforms instead, and the convolution and its input gradient run as
Winograd F(4x4, 3x3) (`winograd.py`: faster on CPU there, equal up to float32 rounding).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfi_jax.nets import winograd as winograd_lib

# (name, output channels) of each architecture's convolutions; "pool" entries are 2x2/2 max
# pools. The convolutions' names and channels are those of the original VGG papers.
VGG19_LAYOUT: tuple[tuple[str, int], ...] = (
    ("conv1_1", 64), ("conv1_2", 64), ("pool1", 0),
    ("conv2_1", 128), ("conv2_2", 128), ("pool2", 0),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), ("pool3", 0),
    ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), ("conv4_4", 512), ("pool4", 0),
    ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), ("conv5_4", 512), ("pool5", 0),
)
VGG16_LAYOUT: tuple[tuple[str, int], ...] = tuple(
    (n, c) for n, c in VGG19_LAYOUT if n not in ("conv3_4", "conv4_4", "conv5_4"))
LAYOUTS = {"vgg16": VGG16_LAYOUT, "vgg19": VGG19_LAYOUT}
ARCHITECTURES = tuple(LAYOUTS)


def layout(architecture: str) -> tuple[tuple[str, int], ...]:
  """The `(name, channels)` layout of `architecture` ("vgg16" or "vgg19")."""
  if architecture not in LAYOUTS:
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
  return LAYOUTS[architecture]


def conv_names(architecture: str) -> tuple[str, ...]:
  """The convolutions of `architecture`, in order (`conv1_1`, ...)."""
  return tuple(n for n, c in layout(architecture) if c)


CONV_NAMES: tuple[str, ...] = conv_names("vgg19")  # every conv name of either layout
DEFAULT_TAPS: tuple[str, ...] = ("conv3_1", "conv4_1", "conv5_1")
PREPROCESSING = ("torchvision", "caffe")
POOLING = ("floor", "ceil")

TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def preprocess(images: jax.Array, convention: str) -> jax.Array:
  """Maps `[B, H, W, 3]` RGB in [0, 1] to the network's input convention.

  `torchvision`: (x - mean) / std, RGB. `caffe`: BGR, x 255, minus the BGR mean.
  """
  if convention == "torchvision":
    return (images - jnp.asarray(TORCHVISION_MEAN)) / jnp.asarray(TORCHVISION_STD)
  if convention == "caffe":
    return images[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR)
  raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {convention!r}")


def pixel_scale(convention: str) -> float:
  """How many network-input units one [0, 1] pixel unit is (for TV in the network's units)."""
  return 255.0 if convention == "caffe" else 1.0


def max_pool(x: jax.Array, mode: str) -> jax.Array:
  """2x2/2 max pool of `[B, H, W, C]`; `ceil` keeps a trailing odd row/column like Caffe,
  `floor` drops it. Values and gradients equal `flax.linen.max_pool` (`reference_max_pool`)."""
  pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
  if mode == "ceil":
    if pad_h or pad_w:
      x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
  elif mode == "floor":
    x = x[:, :x.shape[1] - pad_h, :x.shape[2] - pad_w]
  else:
    raise ValueError(f"pooling must be one of {POOLING}, got {mode!r}")
  return _pool2x2(x)


def reference_max_pool(x: jax.Array, mode: str) -> jax.Array:
  """`max_pool` through `flax.linen.max_pool` (XLA's reduce-window; its gradient is a
  select-and-scatter, ~8x slower on CPU than `_pool2x2`'s): the tests' reference."""
  if mode == "ceil" and (x.shape[1] % 2 or x.shape[2] % 2):
    x = jnp.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)),
                constant_values=-jnp.inf)
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def _windows(x):
  """`[B, H, W, C]` (H, W even) -> `[B, H/2, 2, W/2, 2, C]`: the 2x2 windows."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def _pool2x2(x: jax.Array) -> jax.Array:
  """2x2/2 max pool of `[B, H, W, C]` with H, W even -> `[B, H/2, W/2, C]`.

  Its gradient goes to the first maximum of each window in row-major order, as XLA's
  select-and-scatter does (a flat image gives equal activations), but
  as one elementwise pass instead of a scatter."""
  return _windows(x).max(axis=(2, 4))


def _pool2x2_fwd(x):
  y = _pool2x2(x)
  return y, (x, y)


def _pool2x2_bwd(res, g):
  x, y = res
  win = _windows(x)
  first = win[:, :, 0, :, 0] == y
  second = (win[:, :, 0, :, 1] == y) & ~first
  third = (win[:, :, 1, :, 0] == y) & ~(first | second)
  fourth = ~(first | second | third)
  zero = jnp.zeros_like(g)
  top = jnp.stack([jnp.where(first, g, zero), jnp.where(second, g, zero)], axis=3)
  bottom = jnp.stack([jnp.where(third, g, zero), jnp.where(fourth, g, zero)], axis=3)
  return (jnp.stack([top, bottom], axis=2).reshape(x.shape),)


_pool2x2.defvjp(_pool2x2_fwd, _pool2x2_bwd)


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array, kernel_t: jax.Array) -> jax.Array:
  """3x3 SAME convolution; `kernel_t` = kernel flipped spatially with in/out swapped."""
  return _conv(x, kernel)


def _conv3x3_fwd(x, kernel, kernel_t):
  return _conv(x, kernel), (x, kernel, kernel_t)


def _kernel_grad(x, kernel, g):
  """The kernel's gradient (unused by the reverse map, which differentiates only the input)."""
  _, kernel_vjp = jax.vjp(lambda k: _conv(x, k), kernel)
  return kernel_vjp(g)[0]


def _conv3x3_bwd(res, g):
  x, kernel, kernel_t = res
  return _conv(g, kernel_t), _kernel_grad(x, kernel, g), jnp.zeros_like(kernel_t)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)

# Winograd's transforms cost per position ∝ c_in + c_out, the products it saves ∝ c_in · c_out:
# a layer runs as Winograd F(4x4, 3x3) when asked where c_in · c_out / (c_in + c_out) is at least
# this. On XLA:CPU (research/winograd_layers.py, docs/benchmarks.md) VGG's 64 -> 128 (42.7) and
# wider layers gained at 64² x 18 and 200² x 1; 64 -> 64 (32) lost at 200²; 3 -> 64 lost.
WINOGRAD_MIN_SHARE = 40.0


def winograd_pays(c_in: int, c_out: int, min_share: float | None = None) -> bool:
  """Whether a `c_in -> c_out` 3x3 convolution runs as Winograd (see `WINOGRAD_MIN_SHARE`)."""
  share = WINOGRAD_MIN_SHARE if min_share is None else min_share
  return c_in * c_out >= share * (c_in + c_out)


@jax.custom_vjp
def conv3x3_winograd(x: jax.Array, kernel: jax.Array, kernel_w: jax.Array,
                     kernel_tw: jax.Array) -> jax.Array:
  """`conv3x3` through Winograd: `kernel_w` / `kernel_tw` are the transforms of the kernel and of
  its flipped, in/out-swapped version (`winograd.kernel_transform`)."""
  return winograd_lib.conv3x3(x, kernel_w)


def _winograd_fwd(x, kernel, kernel_w, kernel_tw):
  return winograd_lib.conv3x3(x, kernel_w), (x, kernel, kernel_w, kernel_tw)


def _winograd_bwd(res, g):
  x, kernel, kernel_w, kernel_tw = res
  return (winograd_lib.conv3x3(g, kernel_tw), _kernel_grad(x, kernel, g),
          jnp.zeros_like(kernel_w), jnp.zeros_like(kernel_tw))


conv3x3_winograd.defvjp(_winograd_fwd, _winograd_bwd)


def flip_kernel(kernel: jax.Array) -> jax.Array:
  """`[3, 3, I, O]` -> `[3, 3, O, I]` spatially flipped: the input-gradient kernel."""
  return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


class Conv3x3(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.he_normal(),
                        (3, 3, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    if self.has_variable("backward", "kernel_w"):
      y = conv3x3_winograd(x, kernel, self.get_variable("backward", "kernel_w"),
                           self.get_variable("backward", "kernel_tw"))
    elif self.has_variable("backward", "kernel_t"):
      y = conv3x3(x, kernel, self.get_variable("backward", "kernel_t"))
    else:
      y = _conv(x, kernel)
    return y + bias


def channels(base: int, width: float) -> int:
  return max(1, int(round(base * width)))


class VGG(nn.Module):
  """VGG16 or VGG19 up to the deepest of `taps` (or `last_layer` if deeper).

  Returns a dict tap -> post-ReLU activation `[B, h, w, c]` float32.
  """
  taps: Sequence[str] = DEFAULT_TAPS
  width: float = 1.0
  pooling: str = "floor"
  preprocessing: str = "torchvision"
  last_layer: str | None = None
  architecture: str = "vgg19"

  def setup_check(self):
    names = conv_names(self.architecture)
    unknown = [t for t in self.taps if t not in names]
    if unknown or not self.taps:
      raise ValueError(f"taps must be non-empty and among {self.architecture}'s {names}, got "
                       f"{list(self.taps)}")
    if self.last_layer is not None and self.last_layer not in names:
      raise ValueError(f"last_layer {self.last_layer!r} is not a conv of {self.architecture}")

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    self.setup_check()
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must be [B, H, W, 3], got shape {images.shape}")
    stop = deepest_layer(self.architecture, tuple(self.taps) + (
        (self.last_layer,) if self.last_layer else ()))
    x = preprocess(images.astype(jnp.float32), self.preprocessing)
    out = {}
    for name, base in layout(self.architecture):
      if not base:
        x = max_pool(x, self.pooling)
        continue
      x = nn.relu(Conv3x3(channels(base, self.width), name=name)(x))
      if name in self.taps:
        out[name] = x
      if name == stop:
        break
    return {t: out[t] for t in self.taps}


VGG19 = VGG  # the default architecture; `VGG(architecture="vgg16")` is the other layout


def deepest_layer(architecture: str, layers: Sequence[str]) -> str:
  """The deepest of `layers` in `architecture`'s order."""
  names = conv_names(architecture)
  return names[max(names.index(t) for t in layers)]


def min_image_size(taps: Sequence[str], pooling: str = "floor") -> int:
  """Smallest side for which every tap has at least one spatial position."""
  pools = max(int(t[4]) - 1 for t in taps)
  return 2 ** pools if pooling == "floor" else 1


def conv_shapes(size: int, architecture: str, width: float = 1.0, last: str = "conv5_1"
                ) -> list[tuple[str, int, int, int]]:
  """`[(name, side, c_in, c_out)]` of the convolutions up to `last` for a `size`² input (floor
  pooling)."""
  out, side, cin = [], size, 3
  for name, base in layout(architecture):
    if not base:
      side //= 2
      continue
    cout = channels(base, width)
    out.append((name, side, cin, cout))
    cin = cout
    if name == last:
      break
  return out


def conv_gflop(size: int, taps: Sequence[str], width: float = 1.0,
               architecture: str = "vgg19") -> float:
  """Forward GFLOP of the convolutions up to the deepest of `taps` for one `size`² image
  (floor pooling; 2 FLOP per multiply-add)."""
  shapes = conv_shapes(size, architecture, width, deepest_layer(architecture, taps))
  return sum(2.0 * side * side * 9 * cin * cout for _, side, cin, cout in shapes) / 1e9


def backward_kernels(params, winograd: bool = False, min_share: float | None = None) -> dict:
  """The `backward` collection (flipped kernels) for fast input gradients; compute it once,
  outside any loop, and pass `{'params': params, 'backward': ...}` to `apply`. With `winograd`,
  layers where `winograd_pays(c_in, c_out, min_share)` get their kernels' Winograd transforms
  instead (`kernel_w`, `kernel_tw`) and run as Winograd F(4x4, 3x3)."""
  return _backward_kernels(params, bool(winograd),
                           WINOGRAD_MIN_SHARE if min_share is None else float(min_share))


@functools.partial(jax.jit, static_argnames=("winograd", "min_share"))
def _backward_kernels(params, winograd: bool, min_share: float) -> dict:
  """Compiled as one program: op by op, the first call in a process compiled each flip and swap
  separately (8.6 s of an editor's edit at load 15, profiled)."""
  out = {}
  for name, p in params.items():
    kernel_t = flip_kernel(p["kernel"])
    if winograd and winograd_pays(*p["kernel"].shape[2:], min_share):
      out[name] = {"kernel_w": winograd_lib.kernel_transform(p["kernel"]),
                   "kernel_tw": winograd_lib.kernel_transform(kernel_t)}
    else:
      out[name] = {"kernel_t": kernel_t}
  return out
