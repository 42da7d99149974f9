"""What inpainting reads: the hole, and the test and bank images (generated faces, or a
folder of images listed, fitted into the square and fingerprinted; see `inpaint`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from dfi_jax.data import banks
from dfi_jax.data import fitting
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.data import shoes
from dfi_jax.data import sources
from dfi_jax.data.datasets import common
from dfi_jax.data.datasets.common import DatasetError
from dfi_jax.data.datasets.folder import IMAGE_EXTENSIONS


GREY = 0.5
DATA = ("synthetic", "images")


def centre_square(size: int, fraction: float) -> np.ndarray:
  """`[size, size]` bool hole: a centred square of side `fraction`·size (demo3: 0.5)."""
  if not 0 < fraction < 1:
    raise ValueError(f"hole fraction must be in (0, 1), got {fraction}")
  side = max(1, int(round(size * fraction)))
  top = (size - side) // 2
  hole = np.zeros((size, size), bool)
  hole[top:top + side, top:top + side] = True
  return hole


def load_hole(path: str, size: int) -> np.ndarray:
  """A user's mask image (white = hole), resized to `size`², as `[size, size]` bool."""
  mask = fitting.resize(image_io.load_image(path), (size, size)).mean(-1) > 0.5
  if not mask.any():
    raise ValueError(f"--config.hole_mask={path}: the mask has no white (hole) pixels")
  return mask


def apply_hole(images: np.ndarray, hole: np.ndarray) -> np.ndarray:
  """`[..., H, W, 3]` with the `[H, W]` hole filled grey."""
  return np.where(hole[..., None], np.float32(GREY), images).astype(np.float32)


def hole_error(result: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
  """Root-mean-square error inside the hole."""
  return float(np.sqrt(np.mean((result - truth)[hole] ** 2)))


# --- a folder of images --------------------------------------------------------------------


def list_images(folder: Path, check: bool = False) -> list[str]:
  """Sorted paths (relative, '/'-separated) of the images under `folder`.

  `check`: refuse, before any work, one that is not a regular file (a named pipe would block
  the run forever) or whose name is not valid UTF-8 (files_lib.check_input_file).
  """
  found = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    for f in files:
      if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
        if check:
          files_lib.check_input_file(Path(root, f))
        found.append(Path(root, f).relative_to(folder).as_posix())
  return sorted(found)


def listing_digest(folder: Path, names: Sequence[str]) -> str:
  """sha256 over each image's relative path and byte size (cheap for 50k files)."""
  h = hashlib.sha256()
  for n in names:
    h.update(f"{n}\t{(folder / n).stat().st_size}\n".encode())
  return h.hexdigest()


def procedural_note(folder: Path) -> str:
  """What the folder's images are, as far as this project can tell."""
  if (folder / shoes.MARKER).exists():
    return (f"PROCEDURAL shoes drawn by dfi_jax.data.shoes ({folder / shoes.MARKER}), not "
            "UT-Zappos50K photographs")
  return f"images from {folder}"


class Data(NamedTuple):
  kind: str  # "synthetic" | "images"
  note: str  # what the images are (procedural or not), for logs and outputs
  bank: object  # [N, S, S, 3] float32 array or LazyImages
  bank_names: list[str]
  test_names: list[str]  # output file stems
  truth: np.ndarray  # [B, S, S, 3] float32: the complete test images
  fingerprint: dict  # what determines the data, for run.json


def _stem(name: str) -> str:
  return os.path.splitext(name)[0].replace("/", "__")


def folder_data(config, workdir: Path) -> Data:
  size, fit = config.image_size, config.fit
  bank_dir = config.bank_dir
  if not bank_dir and config.procedural_shoes > 0:
    bank_dir = workdir / "procedural_shoes"
    if not (bank_dir / shoes.MARKER).exists() or \
        len(list_images(bank_dir)) != config.procedural_shoes:
      shoes.write_folder(bank_dir, config.procedural_shoes, config.bank_seed,
                         config.procedural_width)
  if not bank_dir:
    raise DatasetError("--config.bank_dir is empty: set it to a folder of images (e.g. "
                       "UT-Zappos50K's shoes), or --config.procedural_shoes=N to draw N")
  folder = Path(bank_dir).expanduser()
  if not folder.is_dir():
    raise DatasetError(f"--config.bank_dir={folder}: not a directory")
  names = list_images(folder, check=True)
  if not names:
    raise DatasetError(f"--config.bank_dir={folder}: no images in it (expected files ending "
                       f"in {', '.join(IMAGE_EXTENSIONS)})")
  if config.test_dir:
    test_folder = Path(config.test_dir).expanduser()
    if not test_folder.is_dir():
      raise DatasetError(f"--config.test_dir={test_folder}: not a directory")
    test_names = list_images(test_folder, check=True)[:config.num_test]
    if not test_names:
      raise DatasetError(f"--config.test_dir={test_folder}: no images in it")
    test_paths = [test_folder / n for n in test_names]
    bank_names = names
  else:
    if config.num_test >= len(names):
      raise DatasetError(f"--config.bank_dir={folder} has {len(names)} images: too few to hold "
                         f"out --config.num_test={config.num_test} and keep a bank")
    # Spread through the listing, not its tail: a catalogue sorted by category would otherwise
    # give test images of one category only.
    held = set(np.linspace(0, len(names) - 1, config.num_test).round().astype(int).tolist())
    test_names = [names[i] for i in sorted(held)]
    test_paths = [folder / n for n in test_names]
    bank_names = [n for i, n in enumerate(names) if i not in held]
  if config.k > len(bank_names):
    raise DatasetError(f"--config.k={config.k} but the bank has {len(bank_names)} images")

  def read(i: int) -> np.ndarray:
    return fitting.fit_square(image_io.load_image(folder / bank_names[i]), size, fit,
                               pad="border")[0]

  pinned = [image_io.load_image_pinned(p) for p in test_paths]  # hashed from the bytes used
  truth = np.stack([fitting.fit_square(image, size, fit, pad="border")[0]
                    for image, _ in pinned])
  stems = [_stem(n) for n in test_names]
  if len({s.casefold() for s in stems}) != len(stems):  # a.jpg and a.png, or A.jpg and a.jpg
    stems = [f"{i:03d}_{s}" for i, s in enumerate(stems)]
  fingerprint = dict(bank=listing_digest(folder, bank_names), bank_images=len(bank_names),
                     tests=[dict(name=n, sha256=sha) for n, (_, sha) in zip(test_names, pinned)])
  return Data("images", procedural_note(folder), common.LazyImages(len(bank_names), size, read),
              bank_names, stems, truth, fingerprint)


def synthetic_data(config) -> Data:
  bank = banks.load_bank(config)
  tests = sources.synthetic_tests(config, ())
  if config.k > len(bank.images):
    raise ValueError(f"--config.k={config.k} but the bank has {len(bank.images)} images")
  return Data("synthetic", "PROCEDURAL generated faces (dfi_jax.data.faces)", bank.images, bank.names,
              tests.names, tests.images, {})
