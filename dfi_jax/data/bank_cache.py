"""On-disk cache of what never changes between runs: the generated bank's labels, the pixel
features the probe reads of its images, and φ of the bank faces already used.

Files live under `cache_root()` (`banks/` next to the weights: `$DFI_JAX_CACHE`, else
`~/.cache/dfi_jax`). Each is named by `key`, the sha256 of everything that determines it (the
generator's source and library versions, the image size, bank seeds, and for φ the weights
file's sha256, taps, pooling and preprocessing), so a changed setting never reads another's
file. Writes are atomic (temp file, then rename): two runs at once each write a whole file and
the last rename wins (both equal). Every file carries the sha256 of its arrays, checked on every
read: a damaged file is named in one stderr line and recomputed, never trusted. A cache that
cannot be written (read-only disk, full disk) is noted once and the run goes on without it.

`DFI_JAX_BANK_CACHE=0` turns the cache off (everything is then computed each run);
`DFI_JAX_BANK_CACHE=DIR` puts it in DIR instead (the tests use a fresh folder).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from dfi_jax.base import files as files_lib
from dfi_jax.nets import pretrained

FORMAT = 1
OFF_ENV = "DFI_JAX_BANK_CACHE"
PHI_FILE_ROWS = 64  # rows of φ per file: a read loads at most this many extra rows


def enabled() -> bool:
  return os.environ.get(OFF_ENV, "1") not in ("0", "off", "false")


def cache_root() -> Path:
  where = os.environ.get(OFF_ENV, "")
  if where and enabled() and where not in ("1", "on", "true"):
    return Path(where).expanduser()
  return pretrained.cache_dir() / "banks"


def use_compilation_cache() -> None:
  """Keeps XLA's compiled programs in `cache_root()/xla` across runs (JAX's persistent
  compilation cache) — every one, not only those over JAX's 1 s default: besides the reverse
  map's solver (tens of seconds), a warm edit compiles ~90 small programs (masks, φ, the judge),
  ~5 s on 2 cores — unless the cache is off or the user set `jax_compilation_cache_dir`."""
  import jax  # pylint: disable=import-outside-toplevel  # only runs that compile need it
  if not enabled() or jax.config.jax_compilation_cache_dir:
    return
  jax.config.update("jax_compilation_cache_dir", str(cache_root() / "xla"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@functools.lru_cache(maxsize=1)
def generator_version() -> str:
  """The sha256 of the face generator's source, with NumPy's and Pillow's versions (they draw
  and round the pixels): any change to how a face is rendered makes new cache keys."""
  import PIL  # pylint: disable=import-outside-toplevel  # only its version
  h = hashlib.sha256(f"{np.__version__} {PIL.__version__}".encode())
  for path in sorted((Path(__file__).parent / "faces").glob("*.py")):
    h.update(path.name.encode() + b"\0" + path.read_bytes())
  return h.hexdigest()


def key(**parts) -> str:
  """A file name stem for `parts` (JSON-able): their sha256 with the format, 24 hex digits."""
  text = json.dumps(dict(parts, format=FORMAT), sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:24]


def note(message: str) -> None:
  print(f"note: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _checksum(arrays: dict[str, np.ndarray]) -> str:
  h = hashlib.sha256()
  for name in sorted(arrays):
    a = np.ascontiguousarray(arrays[name])
    h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def read(path: Path) -> dict[str, np.ndarray] | None:
  """The arrays of cache file `path`, verified; None when it is missing or damaged (noted)."""
  if not path.exists():
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
    stored = str(arrays.pop("_sha256"))
    if stored != _checksum(arrays):
      raise ValueError("its checksum does not match its content")
  except Exception as e:  # pylint: disable=broad-except  # any damage: recompute, never trust
    note(f"the cache file {path} is damaged ({type(e).__name__}: {e}); recomputing it")
    return None
  return arrays


def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
  """Writes `arrays` and their checksum to `path` atomically; a failure is noted, not raised."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, _sha256=np.asarray(_checksum(arrays)), **arrays)
    files_lib.atomic_write_bytes(path, buf.getvalue())
  except OSError as e:
    note(f"could not write the cache file {path} ({e}); going on without it")


def cached(name: str, compute: Callable[[], dict[str, np.ndarray]],
           **parts) -> dict[str, np.ndarray]:
  """`compute()`'s arrays, read from `cache_root()/<name>-<key(parts)>.npz` when present and
  intact, else computed and written there."""
  if not enabled():
    return compute()
  path = cache_root() / f"{name}-{key(name=name, **parts)}.npz"
  arrays = read(path)
  if arrays is None:
    arrays = compute()
    write(path, arrays)
  return arrays


class PhiRows:
  """φ of bank rows, computed when first read and kept: in memory for this process and, with a
  `folder`, on disk for later runs (files of up to `PHI_FILE_ROWS` rows, named by their ids).

  `ids` maps a bank row to its stable id (a generated face's seed); `phi_of_images` maps
  `[n, S, S, 3]` images to `[n, D]` φ; `images` is indexable by row arrays.
  """

  def __init__(self, images, phi_of_images: Callable[[np.ndarray], np.ndarray], dim: int,
               ids: Callable[[np.ndarray], np.ndarray] | None = None,
               folder: Path | None = None):
    self.images, self.phi_of_images, self.dim = images, phi_of_images, dim
    self.ids = ids or (lambda rows: rows)
    self.folder = folder if folder is not None and enabled() else None
    self.kept: dict[int, np.ndarray] = {}
    self.on_disk: dict[int, Path] | None = None  # id -> file, read on first use
    self.computed = 0  # rows whose φ this process computed (tests, benchmark)

  def _index(self) -> dict[int, Path]:
    if self.on_disk is None:
      self.on_disk = {}
      if self.folder is not None and self.folder.is_dir():
        for path in sorted(self.folder.glob("phi-*.npz")):
          try:
            with np.load(path, allow_pickle=False) as z:
              ids = z["ids"]
          except Exception as e:  # pylint: disable=broad-except
            note(f"the cache file {path} is damaged ({type(e).__name__}); ignoring it")
            continue
          self.on_disk.update({int(i): path for i in ids})
    return self.on_disk

  def _load(self, wanted: list[int]) -> None:
    index = self._index()
    for path in sorted({index[i] for i in wanted if i in index}, key=str):
      arrays = read(path)
      if arrays is None or arrays["phi"].shape[1:] != (self.dim,):
        for i in [i for i, p in index.items() if p == path]:
          del index[i]
        continue
      self.kept.update({int(i): v for i, v in zip(arrays["ids"], arrays["phi"])})

  def __call__(self, rows) -> np.ndarray:
    """`[n]` int bank rows -> `[n, D]` float32 φ."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
      return np.zeros((0, self.dim), np.float32)
    ids = [int(i) for i in self.ids(rows)]
    missing = [i for i in dict.fromkeys(ids) if i not in self.kept]
    if missing:
      self._load(missing)
    by_id = dict(zip(ids, rows.tolist()))
    todo = [i for i in by_id if i not in self.kept]
    if todo:
      phi = np.asarray(self.phi_of_images(self.images[np.asarray([by_id[i] for i in todo])]),
                       np.float32)
      self.computed += len(todo)
      self.kept.update(zip(todo, phi))
      if self.folder is not None:
        for b in range(0, len(todo), PHI_FILE_ROWS):
          part = np.asarray(todo[b:b + PHI_FILE_ROWS], np.int64)
          stem = hashlib.sha256(part.tobytes()).hexdigest()[:16]
          write(self.folder / f"phi-{stem}.npz", dict(ids=part, phi=phi[b:b + PHI_FILE_ROWS]))
    return np.stack([self.kept[i] for i in ids])
