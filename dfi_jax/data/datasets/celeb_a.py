"""CelebA through tfds's `celeb_a` builder, prepared from its five files in a manual directory.

The five files (`img_align_celeba.zip`, `list_eval_partition.txt`, `list_attr_celeba.txt`,
`list_landmarks_align_celeba.txt`, `identity_CelebA.txt`) carry tfds's registered sizes and
sha256. Images are the aligned 218×178 crops; the bank crops rows 40:188, columns 15:163
(`crop.CELEB_A_CROP`) and resizes to `config.image_size`.

tfds's records do not keep the file name, so preparing also writes
`<data_dir>/dfi_jax_index/celeb_a_<split>.npz`: each record's file name ("000001.jpg"), matched
by the JPEG's sha256 against the zip, and its 40 attributes.

The 40 attributes plus two derived ones give the paper's six edits: `Old` = not `Young` and
`Eyes_Open` = not `Narrow_Eyes` (so the Hamming distance counts age and narrow eyes twice).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from dfi_jax.base import files as files_lib
from dfi_jax.data.datasets import common
from dfi_jax.data.datasets import crop as crop_lib
from dfi_jax.data.datasets.common import DatasetError
from dfi_jax.data.sources import Bank, Edit

NAME = "celeb_a"
SPLITS = ("train", "validation", "test")
INDEX_VERSION = 1
IMAGE_SHAPE = (218, 178, 3)
ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")
DERIVED: dict[str, str] = {"Old": "Young", "Eyes_Open": "Narrow_Eyes"}  # name -> negated
# The paper's six LFW edits in CelebA's names: (edit, source attribute or None, target).
SIX_EDITS: tuple[Edit, ...] = (
    Edit("senior", "Old", "Young"),
    Edit("mouth_slightly_open", "Mouth_Slightly_Open"),
    Edit("eyes_open", "Eyes_Open", "Narrow_Eyes"),
    Edit("smiling", "Smiling"),
    Edit("mustache", "Mustache", "No_Beard"),
    Edit("eyeglasses", "Eyeglasses"),
)


def attribute_names() -> tuple[str, ...]:
  return ATTRIBUTES + tuple(DERIVED)


def with_derived(attributes: np.ndarray) -> np.ndarray:
  """`[N, 40]` bool -> `[N, 42]` bool with the derived columns appended."""
  extra = [~attributes[:, ATTRIBUTES.index(neg)] for neg in DERIVED.values()]
  return np.concatenate([attributes, np.stack(extra, axis=1)], axis=1)


def edits() -> tuple[Edit, ...]:
  taken = {e.name for e in SIX_EDITS}
  return SIX_EDITS + tuple(Edit(a.lower(), a) for a in attribute_names()
                           if a.lower() not in taken)


def index_path(data_dir, split: str) -> Path:
  return Path(data_dir).expanduser() / "dfi_jax_index" / f"celeb_a_{split}.npz"


def _names_by_digest(archive: Path) -> dict[str, str]:
  out = {}
  with zipfile.ZipFile(archive) as z:
    for info in z.infolist():
      if not info.is_dir() and info.filename.lower().endswith(".jpg"):
        out.setdefault(common.digest(z.read(info)), info.filename.rsplit("/", 1)[-1])
  return out


def build_index(manual_dir, data_dir) -> dict[str, int]:
  """Writes one index per split; returns the number of records of each."""
  by_digest = _names_by_digest(Path(manual_dir).expanduser() / "img_align_celeba.zip")
  counts = {}
  for split in SPLITS:
    source = common.open_prepared(NAME, data_dir, split, raw=True)
    names, rows = [], np.zeros((len(source), len(ATTRIBUTES)), bool)
    for i in range(len(source)):
      record = source[i]
      name = by_digest.get(common.digest(record["image"]))
      if name is None:
        raise DatasetError(f"celeb_a {split} record {i} matches no JPEG in "
                           "img_align_celeba.zip: prepared from another archive; delete "
                           f"{Path(data_dir) / NAME} and prepare again")
      names.append(name)
      rows[i] = [bool(record["attributes"][a]) for a in ATTRIBUTES]
    path = index_path(data_dir, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # written atomically: never through a link at the final path
    np.savez(buffer, version=INDEX_VERSION, names=np.asarray(names, dtype=str), attributes=rows)
    files_lib.atomic_write_bytes(path, buffer.getvalue())
    counts[split] = len(names)
  return counts


def prepare(manual_dir, data_dir, expected=None) -> dict[str, int]:
  common.prepare_tfds(NAME, manual_dir, data_dir, expected)
  return build_index(manual_dir, data_dir)


def celeb_a_bank(config):
  """The CelebA bank for `config.data = "celeb_a"`: split `config.split` (default train)."""
  split = config.get("split", "train") or "train"
  if split not in SPLITS:
    raise DatasetError(f"--config.split={split!r}: expected one of {SPLITS}")
  path = index_path(config.data_dir, split)
  if not path.is_file():
    raise DatasetError(f"CelebA is not prepared in --config.data_dir={config.data_dir} (no "
                       f"{path}); run: python -m experiments.prepare_data --dataset=celeb_a "
                       f"--manual_dir=DIR --data_dir={config.data_dir}")
  with np.load(path) as f:
    names = [str(n) for n in f["names"]]
    attributes = with_derived(f["attributes"].astype(bool))
  box = crop_lib.parse_crop(config.get("crop"), crop_lib.CELEB_A_CROP)
  size = config.image_size
  source = common.open_prepared(NAME, config.data_dir, split, raw=True)

  def read(i: int) -> np.ndarray:
    image = common.decode_jpeg(source[i]["image"], names[i])
    return crop_lib.crop_and_resize(image, box, size, names[i])

  male = attributes[:, ATTRIBUTES.index("Male")]
  return Bank(images=common.LazyImages(len(names), size, read), attributes=attributes,
              attribute_names=attribute_names(), names=names, edits=edits(),
              group=np.where(male, 0, 1).astype(np.int32))
