"""What the dataset readers share: errors, manual files, tfds preparation and reading, lazy images.

Preparing (tfds's `download_and_prepare` from a manual directory) needs TensorFlow, because the
tfds builders read files through `tf.io.gfile`; it is the `prepare` extra. Reading a prepared
dataset needs only tensorflow-datasets: it is stored with `file_format="array_record"` and read
through `builder.as_data_source()`, which decodes JPEGs with Pillow.

Nothing here downloads: preparation first checks that every file the builder would download is
in the manual directory, with the registered size, and tfds then checks its sha256.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
from PIL import Image

from dfi_jax.base import run_state


class DatasetError(ValueError):
  """A missing or wrong data file, or a bad dataset setting; the message is one line."""


class ManualFile(NamedTuple):
  filename: str
  size: int
  sha256: str
  url: str


def default_data_dir() -> str:
  return os.path.expanduser("~/tensorflow_datasets")


def _tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DatasetError("real datasets need tensorflow-datasets: pip install -e '.[datasets]'"
                       ) from None
  return tfds


def registered_files(name: str) -> list[ManualFile]:
  """The files tfds's builder `name` downloads, with their registered size and sha256."""
  infos = _tfds().builder_cls(name).url_infos or {}
  return [ManualFile(i.filename, int(i.size), i.checksum, url) for url, i in infos.items()]


def read_checksums_tsv(path: str | os.PathLike) -> dict[str, ManualFile]:
  """A tfds `checksums.tsv` (url, size, sha256, filename per line), keyed by url."""
  out = {}
  try:
    lines = Path(path).read_text().splitlines()
  except OSError as e:
    raise DatasetError(f"--checksums={path}: cannot read it ({e.strerror})") from None
  for n, line in enumerate(lines, 1):
    if not line.strip() or line.startswith("#"):
      continue
    fields = line.split("\t")
    if len(fields) != 4 or not fields[1].isdigit():
      raise DatasetError(f"--checksums={path} line {n}: expected 'url<TAB>size<TAB>sha256<TAB>"
                         f"filename', got {line!r}")
    out[fields[0]] = ManualFile(fields[3], int(fields[1]), fields[2], fields[0])
  return out


def _size(n: int) -> str:
  return f"{n:,} bytes"


def check_manual_files(manual_dir: str | os.PathLike, files: Sequence[ManualFile],
                       dataset: str) -> None:
  """Raises DatasetError naming the first missing file, or one whose size or sha256 is not
  the registered one (tfds checks the sha256 again while preparing)."""
  manual_dir = Path(manual_dir).expanduser()
  for f in files:
    path = manual_dir / f.filename
    if not path.is_file():
      raise DatasetError(
          f"{dataset}: missing manual file {f.filename}: put it at {path} (--manual_dir="
          f"{manual_dir}); expected {_size(f.size)}, sha256 {f.sha256}; originally from {f.url}")
    size = path.stat().st_size
    if size != f.size:
      raise DatasetError(
          f"{dataset}: {path} is {_size(size)}, expected {_size(f.size)} (sha256 {f.sha256}): "
          f"not the original {f.filename}; download it again from {f.url}")
    found = sha256_file(path)
    if found != f.sha256:
      raise DatasetError(
          f"{dataset}: {path} has sha256 {found}, expected {f.sha256} ({_size(f.size)}): "
          f"not the original {f.filename} (corrupt or re-packed); download it again from {f.url}")


sha256_file = run_state.file_sha256


def prepare_tfds(name: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike,
                 expected: dict[str, ManualFile] | None = None):
  """Prepares tfds dataset `name` from the files in `manual_dir`, never downloading.

  `expected` (url -> ManualFile) replaces the registered sizes and sha256 (tests use it to
  register their fake archives). Returns the prepared builder.
  """
  tfds = _tfds()
  files = list(expected.values()) if expected else registered_files(name)
  check_manual_files(manual_dir, files, name)  # Before TensorFlow: fast, and works without it.
  try:
    import tensorflow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise DatasetError(f"preparing {name} needs TensorFlow (tfds reads the archives through "
                       "tf.io.gfile): pip install -e '.[prepare]'; reading it later does not"
                       ) from None
  from tensorflow_datasets.core.download import checksums  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.download import download_manager  # pylint: disable=g-import-not-at-top

  builder = tfds.builder_cls(name)(data_dir=os.fspath(Path(data_dir).expanduser()),
                                   file_format="array_record")
  if expected:
    make_manager = builder._make_download_manager  # pylint: disable=protected-access

    def with_expected(*args, **kwargs):
      manager = make_manager(*args, **kwargs)
      manager._url_infos = {  # pylint: disable=protected-access
          url: checksums.UrlInfo(size=f.size, checksum=f.sha256, filename=f.filename)
          for url, f in expected.items()}
      return manager

    builder._make_download_manager = with_expected  # pylint: disable=protected-access
  config = tfds.download.DownloadConfig(manual_dir=os.fspath(Path(manual_dir).expanduser()))
  try:
    builder.download_and_prepare(download_config=config)
  except download_manager.NonMatchingChecksumError as e:
    # tfds's message spans lines; keep the facts.
    by_url = {f.url: f for f in files}
    url = next((u for u in by_url if u in str(e)), None)
    f = by_url.get(url)
    what = f"{f.filename} in {manual_dir}" if f else "a manual file"
    want = f"{_size(f.size)}, sha256 {f.sha256}" if f else "the registered checksum"
    raise DatasetError(f"{name}: {what} has sha256 {_found_sha(e)}, expected {want}: not the "
                       "original file (corrupt or re-packed); download it again") from None
  return builder


def _found_sha(error: Exception) -> str:
  text = str(error)
  marker = "* Got: "
  if marker in text:
    got = text.split(marker, 1)[1]
    if "checksum='" in got:
      return got.split("checksum='", 1)[1].split("'", 1)[0]
  return "(unknown)"


def open_prepared(name: str, data_dir: str | os.PathLike, split: str, raw: bool = False):
  """The prepared split as a random-access data source (no TensorFlow).

  `raw=True` leaves images as their stored JPEG bytes.
  """
  tfds = _tfds()
  data_dir = os.fspath(Path(data_dir).expanduser())
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    decoders = {"image": tfds.decode.SkipDecoding()} if raw else None
    return builder.as_data_source(split=split, decoders=decoders)
  except (AssertionError, FileNotFoundError, ValueError) as e:
    raise DatasetError(
        f"{name} is not prepared in --config.data_dir={data_dir} ({' '.join(str(e).split())[:200]}"
        f"); run: python -m experiments.prepare_data --dataset={name} --manual_dir=DIR "
        f"--data_dir={data_dir}") from None


def decode_jpeg(data: bytes, name: str = "image") -> np.ndarray:
  """Stored image bytes -> `[H, W, 3]` uint8 (Pillow; tfds's own decoder would warn that
  OpenCV is missing)."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError) as e:
    raise DatasetError(f"{name}: the stored image cannot be decoded ({e})") from None


def digest(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


class LazyImages:
  """Bank images read on demand: indexing with an int, a slice or an int array returns
  `[..., S, S, 3]` float32 in [0, 1]; nothing is held in memory between reads.

  `read(i)` returns image `i` already cropped and resized.
  """

  def __init__(self, count: int, size: int, read: Callable[[int], np.ndarray]):
    self._count, self._size, self._read = count, size, read

  def __len__(self) -> int:
    return self._count

  @property
  def shape(self) -> tuple[int, int, int, int]:
    return (self._count, self._size, self._size, 3)

  @property
  def dtype(self):
    return np.dtype(np.float32)

  @property
  def ndim(self) -> int:
    return 4

  def __getitem__(self, index):
    if isinstance(index, tuple):  # images first, then the pixel axes (`images[:, :16, :16]`)
      first, rest = (index[0] if index else slice(None)), index[1:]
      images = self[first]
      return images[rest if isinstance(first, (int, np.integer)) else (slice(None), *rest)]
    if isinstance(index, (int, np.integer)):
      i = int(index)
      if not -self._count <= i < self._count:
        raise IndexError(f"image {i} out of range for a bank of {self._count}")
      return self._read(i % self._count)
    if isinstance(index, slice):
      rows = range(*index.indices(self._count))
    else:
      rows = np.asarray(index)
      if rows.dtype == bool:
        rows = np.flatnonzero(rows)
      rows = [int(i) for i in rows.reshape(-1)]
    out = np.empty((len(rows), self._size, self._size, 3), np.float32)
    for j, i in enumerate(rows):
      out[j] = self[i]
    return out

  def __array__(self, dtype=None, copy=None):
    out = self[:]
    return out if dtype is None else out.astype(dtype)

  def __iter__(self):
    for i in range(self._count):
      yield self[i]


class ReadOnce:
  """A bank's images, each row read (a generated face: rendered) at most once and kept: the
  pixel baseline reads every neighbour of every item for each pixel δ it tries (18,000 renders,
  ~90 s, in the demo, against ~700 distinct faces)."""

  def __init__(self, images):
    self._images, self._rows = images, {}

  def __getitem__(self, index) -> np.ndarray:
    """`[K]` int indices -> `[K, H, W, 3]` float32."""
    rows = [int(i) for i in np.asarray(index).reshape(-1)]
    for i in rows:
      if i not in self._rows:
        self._rows[i] = np.asarray(self._images[i], np.float32)
    return np.stack([self._rows[i] for i in rows])
