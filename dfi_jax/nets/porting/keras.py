"""Keras 2 HDF5 weights (`vgg{16,19}_weights_tf_dim_ordering_tf_kernels[_notop].h5`) via h5py.

Keras 2's `save_weights` layout: the root (or its `model_weights` group, for whole-model
files) has an attribute `layer_names`; each layer is a group with an attribute `weight_names`,
and each weight name is a path inside that group (`block1_conv1/kernel:0`, so the dataset is
`block1_conv1/block1_conv1/kernel:0`). Kernels are HWIO; the ImageNet weights expect Caffe's
preprocessing (BGR, 0-255 minus the mean), so conv1_1's input channels are BGR. Keras's
`MaxPooling2D(padding="valid")` pools with floor.
"""

from __future__ import annotations

import os

import numpy as np

from dfi_jax.nets.porting.common import (
    Checkpoint, PortError, SourceConv, checked_architecture, keras_name, not_vgg_error)

# The with-top file's classifier: ignored, and recorded as such.
TOP_LAYERS = ("fc1", "fc2", "predictions")


def _strings(group, name: str) -> list[str] | None:
  """A string-list attribute, also when Keras split it into `name0`, `name1`, ... chunks."""
  if name in group.attrs:
    values = list(np.atleast_1d(group.attrs[name]))
  elif f"{name}0" in group.attrs:
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
      values += list(np.atleast_1d(group.attrs[f"{name}{chunk}"]))
      chunk += 1
  else:
    return None
  return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _checkpoint(f, where: str) -> Checkpoint:
  group = f["model_weights"] if "model_weights" in f else f
  layer_names = _strings(group, "layer_names")
  if layer_names is None:
    if "layers" in group or "vars" in group:
      raise PortError(f"{where}: a Keras 3 .weights.h5 file, which is not supported; use "
                      "the Keras 2 file vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
    raise PortError(f"{where}: an HDF5 file without Keras's 'layer_names' attribute, not a "
                    "Keras 2 weights file")
  convs, ignored, batch_norm, other = {}, [], [], []
  for layer in layer_names:
    if layer not in group:
      raise PortError(f"{where}: layer {layer!r} is listed in layer_names but has no group "
                      "(truncated or corrupt file?)")
    weights = _strings(group[layer], "weight_names") or []
    if not weights:
      continue  # input, pooling, flatten
    if any("moving_mean" in w or "moving_variance" in w for w in weights):
      batch_norm.append(f"{layer}/{weights[0]}")
      continue
    name = keras_name(layer)
    if name is None:
      (ignored if layer in TOP_LAYERS else other).append(layer)
      continue
    arrays = []
    for w in weights:
      if w not in group[layer]:
        raise PortError(f"{where}: {layer}/{w} is listed in weight_names but missing "
                        "(truncated or corrupt file?)")
      arrays.append((f"{layer}/{w}", np.asarray(group[layer][w])))
    kernels = [a for a in arrays if a[1].ndim == 4]
    biases = [a for a in arrays if a[1].ndim == 1]
    if len(arrays) != 2 or len(kernels) != 1 or len(biases) != 1:
      found = ", ".join(f"{k} {tuple(a.shape)}" for k, a in arrays)
      raise PortError(f"{where}: {layer} has weights {found}, expected a (3, 3, in, out) "
                      "kernel and an (out,) bias")
    convs[name] = SourceConv(kernels[0][0], biases[0][0], kernels[0][1], biases[0][1])

  if not convs:
    raise not_vgg_error(where, "blockB_convC layers with weights", layer_names)
  arch = checked_architecture(where, convs, other, "Keras's ", batch_norm)
  notes = ("classifier (fully connected) layers ignored: " + ", ".join(ignored),) if ignored else ()
  return Checkpoint("keras", "Keras blockB_convC (HWIO)", "HWIO", convs, tuple(ignored), notes,
                    naming="keras", architecture=arch)


def read_checkpoint(path: str | os.PathLike, where: str | None = None) -> Checkpoint:
  """The VGG16/VGG19 convs of a Keras 2 HDF5 weights file (notop or with top)."""
  where = where or str(path)
  try:
    import h5py  # noqa: PLC0415 (optional dependency, only for Keras files)
  except ImportError:
    raise PortError(f"{where}: reading Keras .h5 files needs h5py (pip install h5py)") from None
  try:
    with h5py.File(path, "r") as f:
      return _checkpoint(f, where)
  except PortError:
    raise
  except (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeDecodeError) as e:
    text = " ".join(str(e).split())[:200]
    raise PortError(f"{where}: corrupt or truncated HDF5 file ({type(e).__name__}: {text})"
                    ) from None
