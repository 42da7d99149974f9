"""torch checkpoints (`torch.save` of a state dict) read without torch and without running code.

Two containers exist:
  * zip (torch >= 1.6): `<prefix>/data.pkl` plus one raw record `<prefix>/data/<key>` per
    storage, and `<prefix>/byteorder`.
  * legacy (torch < 1.6, e.g. torchvision's `vgg19-dcbb9e9d.pth`): pickles of the magic
    number, the protocol version and a system-info dict, then the object's pickle, then a
    pickle of the storage keys, then each storage as int64 element count + raw bytes.
    (The even older tar container is refused with a message.)

The pickle is read by an unpickler that resolves only tensor rebuild functions, storage types,
`collections.OrderedDict` and `torch.Size` (the idea of torch's `weights_only`), each mapped to
a local stand-in; any other global is refused before anything is called. Storage bytes are
read only for the tensors that are ported (not the 400 MB classifier).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from dfi_jax.nets.porting.common import PortError


MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# storage type -> (NumPy dtype, itemsize); bfloat16 is widened to float32 on reading.
_STORAGE_DTYPES = {
    "FloatStorage": ("f4", 4), "DoubleStorage": ("f8", 8), "HalfStorage": ("f2", 2),
    "BFloat16Storage": ("bf16", 2), "LongStorage": ("i8", 8), "IntStorage": ("i4", 4),
    "ShortStorage": ("i2", 2), "CharStorage": ("i1", 1), "ByteStorage": ("u1", 1),
    "BoolStorage": ("?", 1),
}
# torch < 0.4 pickled tensors as instances of these classes plus a BUILD of
# (storage, offset, size, stride).
_LEGACY_TENSOR_CLASSES = {s.replace("Storage", "Tensor") for s in _STORAGE_DTYPES}
_TORCH_MODULES = ("torch", "torch.cuda")


class CorruptCheckpoint(ValueError):
  """Inconsistent content; turned into a one-line PortError with the file name."""


def looks_like_torch(head: bytes) -> bool:
  """Whether the first 512 bytes of a file are those of a torch checkpoint container."""
  legacy = (len(head) >= 14 and head[0] == 0x80 and head[2:4] == b"\x8a\x0a"
            and int.from_bytes(head[4:14], "little") == MAGIC_NUMBER)
  return head.startswith(b"PK\x03\x04") or legacy or _is_tar(head)


def _is_tar(head: bytes) -> bool:
  return head[257:262] == b"ustar"


# -- storages and tensors ------------------------------------------------------------------

class _StorageType:
  """Stand-in for `torch.FloatStorage` etc.: only says the element type."""

  def __init__(self, name: str):
    self.name = name
    self.dtype, self.itemsize = _STORAGE_DTYPES[name]


class _Storage:
  """A typed storage whose bytes are read on first use."""

  def __init__(self, storage_type: _StorageType, numel: int, byteorder: str = "little"):
    self.type, self.numel, self.byteorder = storage_type, numel, byteorder
    self.read: Callable[[], bytes] | None = None
    self._array: np.ndarray | None = None

  def array(self) -> np.ndarray:
    if self._array is None:
      if self.read is None:
        raise CorruptCheckpoint("a tensor refers to a storage the file does not contain")
      raw = self.read()
      nbytes = self.numel * self.type.itemsize
      if len(raw) != nbytes:
        raise CorruptCheckpoint(f"a {self.type.name} of {self.numel} elements has {len(raw)} bytes, "
                       f"expected {nbytes}")
      order = "<" if self.byteorder == "little" else ">"
      if self.type.dtype == "bf16":
        bits = np.frombuffer(raw, order + "u2").astype(np.uint32) << 16
        self._array = bits.view(np.float32)
      else:
        self._array = np.frombuffer(raw, np.dtype(self.type.dtype).newbyteorder(order))
    return self._array


class _StorageView:
  """A legacy storage view: `numel` elements of `root` from `offset`."""

  def __init__(self, root: _Storage, offset: int, numel: int):
    self.root, self.offset, self.numel, self.type = root, offset, numel, root.type

  def array(self) -> np.ndarray:
    base = self.root.array()
    if self.offset < 0 or self.offset + self.numel > base.shape[0]:
      raise CorruptCheckpoint("a storage view runs past its storage")
    return base[self.offset:self.offset + self.numel]


def _ints(value, what: str) -> tuple[int, ...]:
  if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
    raise CorruptCheckpoint(f"tensor {what} is {value!r}, expected a tuple of ints")
  return tuple(value)


class TensorRecord:
  """A tensor as saved: storage, element offset, shape, strides; `array()` reads it."""

  def __init__(self, storage=None, offset=0, shape=(), stride=()):
    if storage is not None:
      self.__setstate__((storage, offset, shape, stride))

  def __setstate__(self, state):
    if not isinstance(state, tuple) or len(state) < 4:
      raise CorruptCheckpoint("a tensor's state is not (storage, offset, size, stride)")
    storage, offset, shape, stride = state[:4]
    if not isinstance(storage, (_Storage, _StorageView)):
      raise CorruptCheckpoint("a tensor's storage is not a storage")
    if type(offset) is not int:
      raise CorruptCheckpoint(f"tensor offset is {offset!r}")
    self.storage, self.offset = storage, offset
    self.shape, self.stride = _ints(shape, "size"), _ints(stride, "stride")
    if len(self.shape) != len(self.stride):
      raise CorruptCheckpoint(f"tensor size {self.shape} and stride {self.stride} differ in length")

  def array(self) -> np.ndarray:
    """A fresh C-contiguous copy of the tensor's elements."""
    base = self.storage.array()
    if self.offset < 0 or min(self.shape + self.stride, default=0) < 0:
      raise CorruptCheckpoint(f"tensor with negative offset, size or stride {self.shape}/{self.stride}")
    if 0 in self.shape:
      return np.zeros(self.shape, base.dtype)
    last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
    if last >= base.shape[0]:
      raise CorruptCheckpoint(f"a tensor of size {self.shape} runs past its storage of "
                     f"{base.shape[0]} elements")
    view = np.lib.stride_tricks.as_strided(
        base[self.offset:], shape=self.shape,
        strides=[s * base.itemsize for s in self.stride], writeable=False)
    return np.array(view)


class _LegacyTensor(TensorRecord):
  """`torch.FloatTensor` etc. of torch < 0.4 pickles: created empty, then BUILD."""


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
  return TensorRecord(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  return TensorRecord(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  return data


_FUNCTIONS = {
    "_rebuild_tensor": _rebuild_tensor, "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  """Resolves only tensors, storages and ordered dicts; refuses every other global."""

  def __init__(self, file, where: str, storage_for=None):
    super().__init__(file)
    self.where, self._storage_for = where, storage_for

  def find_class(self, module, name):
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module == "torch._utils" and name in _FUNCTIONS:
      return _FUNCTIONS[name]
    if module in _TORCH_MODULES and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module in _TORCH_MODULES and name in _LEGACY_TENSOR_CLASSES:
      return _LegacyTensor
    if module == "torch" and name == "Size":
      return tuple
    raise PortError(
        f"{self.where}: refusing to unpickle {module}.{name}: only tensors, storages and "
        "(ordered) dicts are read from torch files and no code is run; save the model's "
        "state_dict() (torch.save(model.state_dict(), path)), not the model object")

  def persistent_load(self, pid):
    if self._storage_for is None or not isinstance(pid, tuple) or not pid:
      raise CorruptCheckpoint(f"unexpected persistent id {pid!r}")
    kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if kind != "storage" or len(pid) not in (5, 6) or not isinstance(pid[1], _StorageType):
      raise CorruptCheckpoint(f"unexpected persistent id {pid[:2]!r}")
    if type(pid[4]) is not int or pid[4] < 0:
      raise CorruptCheckpoint(f"storage size {pid[4]!r}")
    return self._storage_for(pid)


# -- containers ----------------------------------------------------------------------------

class _Opened:
  """The unpickled top-level object plus the open file that its storages read from."""

  def __init__(self, obj, closer):
    self.obj, self._closer = obj, closer

  def __enter__(self):
    return self.obj

  def __exit__(self, *exc):
    self._closer()


def _open_zip(path: Path, where: str) -> _Opened:
  archive = zipfile.ZipFile(path)
  try:
    names = set(archive.namelist())
    pickles = sorted(n for n in names if n == "data.pkl" or
                     (n.endswith("/data.pkl") and n.count("/") == 1))
    if not pickles:
      if "__provenance__.npy" in names:
        raise PortError(f"{where}: already a dfi_jax weights file; use it as it is")
      raise PortError(f"{where}: a zip archive without data.pkl, not a torch checkpoint")
    prefix = pickles[0][:-len("data.pkl")]
    if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
      raise PortError(f"{where}: a TorchScript archive (torch.jit.save); save the model's "
                      "state_dict() with torch.save and port that")
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace")
      if byteorder not in ("little", "big"):
        raise CorruptCheckpoint(f"byteorder record {byteorder!r}")
    storages: dict[str, _Storage] = {}

    def storage_for(pid):
      _, storage_type, key, _location, numel = pid
      key = str(key)
      if key not in storages:
        storage = storages[key] = _Storage(storage_type, numel, byteorder)
        record = f"{prefix}data/{key}"
        if record in names:
          storage.read = lambda: archive.read(record)
      return storages[key]

    obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), where, storage_for).load()
  except BaseException:
    archive.close()
    raise
  return _Opened(obj, archive.close)


def _open_legacy(path: Path, where: str) -> _Opened:
  f = open(path, "rb")
  try:
    size = os.fstat(f.fileno()).st_size

    def plain():
      return _Unpickler(f, where).load()

    if plain() != MAGIC_NUMBER:
      raise CorruptCheckpoint("bad magic number")
    if plain() != LEGACY_PROTOCOL:
      raise CorruptCheckpoint("unknown legacy protocol version")
    sys_info = plain()
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
      raise PortError(f"{where}: a big-endian legacy torch checkpoint; load and re-save it "
                      "with torch on a little-endian machine")
    roots: dict = {}
    views: dict = {}

    def storage_for(pid):
      if len(pid) != 6:
        raise CorruptCheckpoint("storage id of the zip format in a legacy file")
      _, storage_type, root_key, _location, numel, view = pid
      root = roots.setdefault(root_key, _Storage(storage_type, numel))
      if view is None:
        return root
      if not (isinstance(view, tuple) and len(view) == 3
              and all(type(v) is int for v in view[1:])):
        raise CorruptCheckpoint(f"storage view {view!r}")
      view_key, offset, view_numel = view
      return views.setdefault(view_key, _StorageView(root, offset, view_numel))

    obj = _Unpickler(f, where, storage_for).load()
    keys = plain()
    if not isinstance(keys, list):
      raise CorruptCheckpoint("no storage key list after the object")
    offset = f.tell()
    for key in keys:
      storage = roots.get(key)
      if storage is None:
        raise CorruptCheckpoint(f"storage {key!r} is not used by any tensor")
      f.seek(offset)
      head = f.read(8)
      if len(head) != 8:
        raise CorruptCheckpoint(f"file ends before storage {key!r} (truncated?)")
      numel = struct.unpack("<q", head)[0]
      start, nbytes = offset + 8, numel * storage.type.itemsize
      if numel != storage.numel or start + nbytes > size:
        raise CorruptCheckpoint(f"storage {key!r} of {numel} elements does not fit "
                       f"({size - start} bytes left; truncated?)")
      storage.read = _reader(f, start, nbytes)
      offset = start + nbytes
  except BaseException:
    f.close()
    raise
  return _Opened(obj, f.close)


def _reader(f, start: int, nbytes: int) -> Callable[[], bytes]:
  def read():
    f.seek(start)
    return f.read(nbytes)
  return read


def open_checkpoint(path: str | os.PathLike, where: str | None = None) -> _Opened:
  """Context manager over the unpickled top-level object of a torch checkpoint; tensors in it
  are `TensorRecord`s whose `array()` works while the context is open."""
  path = Path(path)
  where = where or str(path)
  with open(path, "rb") as f:
    head = f.read(512)
  if head.startswith(b"PK\x03\x04"):
    return _open_zip(path, where)
  if _is_tar(head):
    raise PortError(f"{where}: a tar-format torch checkpoint (torch < 0.1.10), which is not "
                    "supported; load it with torch and re-save it with torch.save")
  if not looks_like_torch(head):
    raise PortError(f"{where}: not a torch checkpoint (neither a zip archive nor a legacy "
                    "torch.save file); corrupt, or another format?")
  return _open_legacy(path, where)
