"""Caffe `.caffemodel` files (a serialized `caffe.NetParameter`), decoded from the protobuf
wire format directly, without protobuf or Caffe.

Only these fields of caffe.proto (BVLC/caffe, src/caffe/proto/caffe.proto) are read:

  NetParameter      layer = 100 (LayerParameter), layers = 2 (V1LayerParameter)
  LayerParameter    name = 1, type = 2 (string), blobs = 7
  V1LayerParameter  name = 4, type = 5 (enum: CONVOLUTION = 4, INNER_PRODUCT = 14),
                    blobs = 6, layer = 1 (V0LayerParameter: name = 1, type = 2, blobs = 50)
  BlobProto         shape = 7 (BlobShape: dim = 1, packed int64), data = 5 (packed float),
                    double_data = 8, legacy num/channels/height/width = 1..4

Old files such as `VGG_ILSVRC_19_layers.caffemodel` use the V1 `layers` field with the legacy
4-d blob dims. Kernels are OIHW; the weights expect BGR 0-255 mean-subtracted input, and
Caffe pools with ceil. Blobs of layers that are not ported (fc6 is 400 MB) are never decoded.
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

import numpy as np

from dfi_jax.nets.porting.common import (
    Checkpoint, PortError, SourceConv, checked_architecture, not_vgg_error)

# NetParameter field -> allowed wire types (used to tell a Caffe file from other bytes).
_NET_FIELDS = {1: (2,), 2: (2,), 3: (2,), 4: (0, 2), 5: (0,), 6: (2,), 7: (0,), 8: (2,),
               100: (2,)}
_V1_TYPES = {4: "Convolution", 14: "InnerProduct", 18: "ReLU", 17: "Pooling", 6: "Dropout",
             20: "Softmax", 21: "SoftmaxWithLoss", 5: "Data", 15: "LRN", 3: "Concat"}
_V0_TYPES = {"conv": "Convolution", "innerproduct": "InnerProduct"}
_CONV_NAME = re.compile(r"conv\d+_\d+")


class _Corrupt(ValueError):
  """Bytes that do not decode; turned into a one-line PortError with the file name."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
  result = shift = 0
  while True:
    if pos >= end:
      raise _Corrupt("a varint runs past the end of its message")
    byte = buf[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7
    if shift > 63:
      raise _Corrupt("a varint longer than 10 bytes")


def _fields(buf, start: int, end: int):
  """Yields `(field, wire_type, value)`: an int for varints, a `(start, end)` span otherwise."""
  pos = start
  while pos < end:
    key, pos = _varint(buf, pos, end)
    field, wire = key >> 3, key & 7
    if field == 0:
      raise _Corrupt("field number 0")
    if wire == 0:
      value, pos = _varint(buf, pos, end)
    elif wire in (1, 2, 5):
      if wire == 2:
        length, pos = _varint(buf, pos, end)
      else:
        length = 8 if wire == 1 else 4
      if pos + length > end:
        raise _Corrupt(f"field {field} runs {pos + length - end} bytes past the end of its "
                       "message (truncated?)")
      value = (pos, pos + length)
      pos += length
    else:
      raise _Corrupt(f"wire type {wire} of field {field}")
    yield field, wire, value


def _string(buf, span) -> str:
  return bytes(buf[span[0]:span[1]]).decode("utf8", "replace")


def _packed_varints(buf, start: int, end: int) -> list[int]:
  values, pos = [], start
  while pos < end:
    value, pos = _varint(buf, pos, end)
    values.append(value)
  return values


def _blob(buf, start: int, end: int) -> np.ndarray:
  shape, legacy, floats, doubles = None, [0, 0, 0, 0], [], []
  for field, wire, value in _fields(buf, start, end):
    if field == 7 and wire == 2:
      shape = []
      for f2, w2, v2 in _fields(buf, *value):
        if f2 == 1:
          shape += _packed_varints(buf, *v2) if w2 == 2 else [v2] if w2 == 0 else []
    elif field == 5 and wire in (2, 5):
      floats.append(value)
    elif field == 8 and wire in (2, 1):
      doubles.append(value)
    elif field in (1, 2, 3, 4) and wire == 0:
      legacy[field - 1] = value
  if shape is None:
    shape = legacy
  if any(d >= 2 ** 40 for d in shape):
    raise _Corrupt(f"blob dims {shape}")
  spans, dtype = (floats, "<f4") if floats or not doubles else (doubles, "<f8")
  data = np.concatenate([np.frombuffer(buf, dtype, (b - a) // np.dtype(dtype).itemsize, a)
                         for a, b in spans]) if spans else np.zeros(0, np.float32)
  if any((b - a) % np.dtype(dtype).itemsize for a, b in spans):
    raise _Corrupt("packed float data of a length that is not a multiple of 4")
  if data.size != int(np.prod(shape)):
    raise _Corrupt(f"a blob of shape {tuple(shape)} holds {data.size} values")
  return data.astype(np.float32).reshape(shape)


def _layer(buf, span, version: int):
  """`(name, type, blob spans)` of a LayerParameter (2) or V1LayerParameter (1)."""
  name, kind, blobs = "", "", []
  name_f, type_f, blob_f = (1, 2, 7) if version == 2 else (4, 5, 6)
  for field, wire, value in _fields(buf, *span):
    if field == name_f and wire == 2:
      name = _string(buf, value)
    elif field == type_f:
      if version == 2 and wire == 2:
        kind = _string(buf, value)
      elif version == 1 and wire == 0:
        kind = _V1_TYPES.get(value, f"V1 type {value}")
    elif field == blob_f and wire == 2:
      blobs.append(value)
    elif version == 1 and field == 1 and wire == 2:  # a V0LayerParameter inside
      for f0, w0, v0 in _fields(buf, *value):
        if f0 == 1 and w0 == 2:
          name = _string(buf, v0)
        elif f0 == 2 and w0 == 2:
          kind = _V0_TYPES.get(_string(buf, v0), _string(buf, v0))
        elif f0 == 50 and w0 == 2:
          blobs.append(v0)
  return name, kind, blobs


def _top_level(buf):
  """NetParameter's fields, checked against the schema; layers as `(version, span)`."""
  layers = []
  for field, wire, value in _fields(buf, 0, len(buf)):
    if field not in _NET_FIELDS or wire not in _NET_FIELDS[field]:
      raise _Corrupt(f"field {field} (wire type {wire}) is not a NetParameter field")
    if field in (2, 100):
      layers.append((2 if field == 100 else 1, value))
  return layers


def _mapped(path: Path):
  with open(path, "rb") as f:
    if os.fstat(f.fileno()).st_size == 0:
      return b""
    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _close(buf) -> None:
  if isinstance(buf, mmap.mmap):
    try:
      buf.close()
    except BufferError:  # an array view is still alive; the GC unmaps it
      pass


def looks_like_net(path: str | os.PathLike) -> bool:
  """Whether the file's top level decodes as a NetParameter with at least one layer."""
  buf = _mapped(Path(path))
  try:
    return bool(_top_level(buf))
  except _Corrupt:
    return False
  finally:
    _close(buf)


def _checkpoint(buf, where: str) -> Checkpoint:
  top = _top_level(buf)
  layers = [_layer(buf, span, version) for version, span in top]
  if not layers:
    raise PortError(f"{where}: a Caffe NetParameter without layers")
  convs, ignored, batch_norm, other, spans = {}, [], [], [], {}
  for name, kind, blobs in layers:
    if not blobs:
      continue
    if kind in ("BatchNorm", "Scale", "BN"):
      batch_norm.append(f"{name} ({kind})")
    elif kind == "InnerProduct":
      ignored.append(name)
    elif kind == "Convolution" and _CONV_NAME.fullmatch(name):
      if name in spans:
        raise PortError(f"{where}: two layers named {name}")
      spans[name] = blobs
    else:
      other.append(f"{name} ({kind or 'no type'})")
  if not spans:
    raise not_vgg_error(where, "convB_C convolution layers",
                        [f"{n} ({k})" for n, k, b in layers if b])
  arch = checked_architecture(where, spans, other, batch_norm=batch_norm)
  for name, blobs in spans.items():
    if len(blobs) != 2:
      raise PortError(f"{where}: {name} has {len(blobs)} blobs, expected 2 (kernel, bias)")
    kernel, bias = _blob(buf, *blobs[0]), _blob(buf, *blobs[1])
    if bias.ndim > 1 and all(d == 1 for d in bias.shape[:-1]):
      bias = bias.reshape(-1)  # legacy (1, 1, 1, out) dims
    convs[name] = SourceConv(f"{name} blobs[0]", f"{name} blobs[1]", kernel, bias)
  notes = ("classifier (fully connected) layers ignored: " + ", ".join(ignored),) if ignored else ()
  versions = {v for v, _ in top}
  layout = "Caffe V1 layers (OIHW)" if versions == {1} else "Caffe layer (OIHW)"
  return Checkpoint("caffe", layout, "OIHW", convs, tuple(ignored), notes, architecture=arch)


def read_checkpoint(path: str | os.PathLike, where: str | None = None) -> Checkpoint:
  """The VGG16/VGG19 convs of a `.caffemodel` (V1 `layers` or current `layer` messages)."""
  where = where or str(path)
  try:
    buf = _mapped(Path(path))
  except (OSError, ValueError) as e:
    raise PortError(f"{where}: cannot read ({e})") from None
  try:
    return _checkpoint(buf, where)
  except _Corrupt as e:
    raise PortError(f"{where}: not a Caffe model or corrupt/truncated ({e})") from None
  finally:
    _close(buf)
