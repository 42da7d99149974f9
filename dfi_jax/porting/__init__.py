"""Ports the standard VGG19 checkpoints into dfi_jax's native weights format.

  * torchvision `vgg19-dcbb9e9d.pth` (zip or legacy torch.save container; also the official
    DFI's `vgg19g-4aff041b.pth` with `convB_C` keys), read without torch or code execution;
  * Keras 2 `vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5` (needs h5py);
  * Caffe `VGG_ILSVRC_19_layers.caffemodel` and `vgg_normalised.caffemodel`.

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

from dfi_jax import weights as weights_lib
from dfi_jax.porting import caffe, keras, torchvision
from dfi_jax.porting.common import (
    CONVENTIONS, FORMATS, Checkpoint, PortError, detect_format, sniff_format, to_params)

__all__ = ["FORMATS", "PortError", "PortResult", "detect_format", "port", "port_file",
           "read_checkpoint"]

_READERS = {"torchvision": torchvision.read_checkpoint, "keras": keras.read_checkpoint,
            "caffe": caffe.read_checkpoint}


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


def read_checkpoint(src: str | os.PathLike, source_format: str | None = None) -> Checkpoint:
  """The VGG19 convs found in `src`; the format is detected from the content unless given."""
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
         made_by: str = "dfi_jax.porting.port") -> tuple[dict, dict]:
  """`(params, provenance)` for the VGG19 checkpoint `src` (HWIO float32 NumPy params)."""
  src = Path(src)
  ckpt = read_checkpoint(src, source_format)
  params, width = to_params(ckpt, str(src))
  preprocessing, pooling = CONVENTIONS[ckpt.source_format]
  width_note = "" if width == 1.0 else f", reduced width {width:g}"
  provenance = weights_lib.provenance_for(
      "ported",
      f"VGG19 weights ported from {src.name} ({ckpt.source_format}{width_note})",
      made_by, params, preprocessing=preprocessing, pooling=pooling, width=width,
      source_format=ckpt.source_format, source_file=src.name, source_sha256=_sha256(src),
      source_layout=ckpt.layout,
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
              made_by: str = "dfi_jax.porting.port_file") -> PortResult:
  """Ports `src` and writes the native weights file `dst` atomically (temp file + rename)."""
  src, dst = Path(src), Path(dst)
  _check_format(source_format)
  _check_source(src)
  _check_destination(dst, src, overwrite)
  params, provenance = port(src, source_format, made_by)
  try:
    path = weights_lib.save_weights(dst, params, provenance)
  except OSError as e:
    raise PortError(f"{dst}: cannot be written ({e.strerror or e})") from None
  return PortResult(path, provenance)
