"""LFW through tfds's `lfw` builder, joined with Kumar et al.'s attributes.

Preparing (`experiments/prepare_data.py --dataset=lfw`, needs TensorFlow) runs the tfds builder
on the user's `lfw.tgz` in the manual directory, stored as array_record, then writes an index
next to it, `<data_dir>/dfi_jax_index/lfw.npz`: tfds's records hold only the person's name and
the JPEG, so each record is matched to its file in `lfw.tgz` by the JPEG's sha256 (tfds stores
the file's bytes unchanged); the attribute table is parsed, binarised over all its rows (as the
official code does) and joined; both kinds of missing image are counted and listed.

The bank (`config.data = "lfw"`) is the joined images in the attribute file's order, so that
Hamming ties break as in the official code; images are decoded, cropped and resized on demand.
"""

from __future__ import annotations

import json
import io
import os
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dfi_jax.base import files as files_lib
from dfi_jax.data.datasets import common
from dfi_jax.data.datasets import crop as crop_lib
from dfi_jax.data.datasets import lfw_attributes
from dfi_jax.data.datasets.common import DatasetError
from dfi_jax.data.sources import Bank

NAME = "lfw"
SPLIT = "train"  # tfds's lfw has one split
INDEX_VERSION = 1


def index_path(data_dir: str | os.PathLike) -> Path:
  return Path(data_dir).expanduser() / "dfi_jax_index" / "lfw.npz"


def _stems_by_digest(archive: Path) -> dict[tuple[str, str], str]:
  """(person, sha256 of the JPEG) -> image stem, for every `lfw/P/P_NNNN.jpg` in the archive."""
  out = {}
  with tarfile.open(archive, "r:*") as tar:
    for member in tar:
      parts = member.name.split("/")
      if not member.isfile() or len(parts) < 3 or not parts[-1].lower().endswith(".jpg"):
        continue
      data = tar.extractfile(member).read()
      out[(parts[-2], common.digest(data))] = parts[-1].rsplit(".", 1)[0]
  return out


def record_stems(data_dir: str | os.PathLike, archive: Path) -> list[str]:
  """The image stem of every record of the prepared split, in record order."""
  by_digest = _stems_by_digest(archive)
  source = common.open_prepared(NAME, data_dir, SPLIT, raw=True)
  stems = []
  for i in range(len(source)):
    record = source[i]
    label = record["label"]
    label = label.decode() if isinstance(label, bytes) else str(label)
    stem = by_digest.get((label, common.digest(record["image"])))
    if stem is None:
      raise DatasetError(f"lfw record {i} ({label}) matches no JPEG in {archive}: the prepared "
                         f"dataset in {data_dir} was made from another archive; delete "
                         f"{Path(data_dir) / NAME} and prepare again")
    stems.append(stem)
  return stems


class PrepareReport(NamedTuple):
  index: Path
  num_images: int
  join: lfw_attributes.Join


def build_index(manual_dir: str | os.PathLike, data_dir: str | os.PathLike) -> PrepareReport:
  """Writes `dfi_jax_index/lfw.npz` (and `lfw_report.json`) for the prepared tfds `lfw`."""
  manual_dir = Path(manual_dir).expanduser()
  table = lfw_attributes.parse(manual_dir / lfw_attributes.ATTRIBUTES_FILE)
  binary = lfw_attributes.binarise(table)
  stems = record_stems(data_dir, manual_dir / "lfw.tgz")
  joined = lfw_attributes.join(table.names, stems)
  if len(joined.table_rows) == 0:
    raise DatasetError(f"no image of {manual_dir / 'lfw.tgz'} has a row in "
                       f"{lfw_attributes.ATTRIBUTES_FILE}: {joined.summary()}")
  path = index_path(data_dir)
  path.parent.mkdir(parents=True, exist_ok=True)
  rows = joined.table_rows
  buffer = io.BytesIO()  # written atomically: never through a link at the final path
  np.savez(buffer, version=INDEX_VERSION,
           names=np.asarray([table.names[t] for t in rows]),
           record=joined.image_rows,
           attributes=binary.attributes[rows],
           attribute_names=np.asarray(binary.attribute_names),
           attribute_gender=np.asarray([binary.gender[a] for a in binary.attribute_names]),
           group=binary.group[rows],
           scores=table.scores[rows],
           score_names=np.asarray(table.score_names),
           images_without_attributes=np.asarray(joined.images_without_attributes, dtype=str),
           attributes_without_images=np.asarray(joined.attributes_without_images, dtype=str))
  files_lib.atomic_write_bytes(path, buffer.getvalue())
  report = dict(num_records=len(stems), num_attribute_rows=len(table.names),
                bank_size=int(len(rows)),
                images_without_attributes=joined.images_without_attributes,
                attributes_without_images=joined.attributes_without_images,
                attribute_gender=binary.gender)
  files_lib.atomic_write_text(path.parent / "lfw_report.json", json.dumps(report, indent=1))
  return PrepareReport(path, len(stems), joined)


def prepare(manual_dir, data_dir, expected=None) -> PrepareReport:
  """tfds `lfw` from `manual_dir/lfw.tgz` (array_record), then the attribute index."""
  manual_dir = Path(manual_dir).expanduser()
  attributes_file = manual_dir / lfw_attributes.ATTRIBUTES_FILE
  if not attributes_file.is_file():  # Checked first: it is cheap and tfds is not.
    raise DatasetError(
        f"lfw: missing manual file {lfw_attributes.ATTRIBUTES_FILE}: put it at "
        f"{attributes_file} (--manual_dir={manual_dir}); Kumar et al.'s attribute scores, "
        f"13,143 rows × 73 attributes, from {lfw_attributes.ATTRIBUTES_URL}")
  lfw_attributes.parse(attributes_file)  # Fail on a bad table before the long part.
  common.prepare_tfds(NAME, manual_dir, data_dir, expected)
  return build_index(manual_dir, data_dir)


def load_index(data_dir: str | os.PathLike) -> dict:
  path = index_path(data_dir)
  if not path.is_file():
    raise DatasetError(f"LFW is not prepared in --config.data_dir={data_dir} (no {path}); run: "
                       f"python -m experiments.prepare_data --dataset=lfw --manual_dir=DIR "
                       f"--data_dir={data_dir}")
  with np.load(path) as f:
    index = {k: f[k] for k in f.files}
  if int(index["version"]) != INDEX_VERSION:
    raise DatasetError(f"{path} is index version {int(index['version'])}, expected "
                       f"{INDEX_VERSION}; prepare LFW again")
  return index


def lfw_bank(config):
  """The LFW bank for `config.data = "lfw"` (see the module docstring)."""
  index = load_index(config.data_dir)
  box = crop_lib.parse_crop(config.get("crop"), crop_lib.LFW_CROP)
  size = config.image_size
  source = common.open_prepared(NAME, config.data_dir, SPLIT, raw=True)
  records, names = index["record"], [str(n) for n in index["names"]]

  def read(i: int) -> np.ndarray:
    image = common.decode_jpeg(source[int(records[i])]["image"], names[i])
    return crop_lib.crop_and_resize(image, box, size, names[i])

  attribute_names = tuple(str(a) for a in index["attribute_names"])
  edits = lfw_attributes.edits(attribute_names)
  _warn_gender_mismatch(config, names, index, edits)
  return Bank(images=common.LazyImages(len(names), size, read),
              attributes=index["attributes"].astype(bool),
              attribute_names=attribute_names,
              names=names,
              edits=edits,
              group=index["group"].astype(np.int32))


def _warn_gender_mismatch(config, names, index, edits) -> None:
  """The official code takes an edit's candidates from the gender set of its target attribute;
  the bank's `group` restricts them to the test image's set instead. Both agree when the test
  image is in that set; say so when it is not."""
  gender = dict(zip((str(a) for a in index["attribute_names"]),
                    (str(g) for g in index["attribute_gender"])))
  where = {n: i for i, n in enumerate(names)}
  wanted = set(config.get("attributes", ()) or ()) or {e.name for e in edits}
  for name in config.get("test_names", ()) or ():
    if name not in where:
      continue
    group = ("Male", "Female", "neither")[int(index["group"][where[name]])]
    for e in edits:
      if e.name in wanted and gender[e.target_attribute] != group:
        print(f"note: {name} is in the {group} set but {e.target_attribute!r} is a "
              f"{gender[e.target_attribute]} attribute: the official code would take that edit's "
              f"neighbours from the {gender[e.target_attribute]} set, this run takes them from "
              f"the {group} set", flush=True)
