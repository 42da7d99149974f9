"""Small fake copies of the real datasets' files, in their real layouts, for tests and for trying
the prepare and run commands without the real data:

  python -m dfi_jax.data.datasets.fakes --out=/tmp/dfi_fakes

writes `lfw_manual/` (`lfw.tgz` with `lfw/Person_Name/Person_Name_0001.jpg` 250×250 JPEGs and an
`lfw_attributes.txt` in Kumar's format), `celeb_a_manual/` (CelebA's five files, 218×178
JPEGs), `folder/` (images + `attributes.csv`), and in each manual directory a `checksums.tsv`
registering the fakes' sizes and sha256 under tfds's real URLs (pass it as `--checksums`).

Faces come from `dfi_jax.data.faces`, and their scores agree with what is drawn: a face drawn with
glasses has a positive "Eyeglasses" score and a negative "No Eyewear" one. One image of LFW has
no attribute row and one attribute row has no image, so the join's report has something to say.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from dfi_jax.data import faces
from dfi_jax.data.datasets import celeb_a
from dfi_jax.data.datasets import common

# Kumar et al.'s 73 attribute names, in the order of the real file's header.
KUMAR_ATTRIBUTES: tuple[str, ...] = (
    "Male", "Asian", "White", "Black", "Baby", "Child", "Youth", "Middle Aged", "Senior",
    "Black Hair", "Blond Hair", "Brown Hair", "Bald", "No Eyewear", "Eyeglasses", "Sunglasses",
    "Mustache", "Smiling", "Frowning", "Chubby", "Blurry", "Harsh Lighting", "Flash",
    "Soft Lighting", "Outdoor", "Curly Hair", "Wavy Hair", "Straight Hair",
    "Receding Hairline", "Bangs", "Sideburns", "Fully Visible Forehead",
    "Partially Visible Forehead", "Obstructed Forehead", "Bushy Eyebrows", "Arched Eyebrows",
    "Narrow Eyes", "Eyes Open", "Big Nose", "Pointy Nose", "Big Lips", "Mouth Closed",
    "Mouth Slightly Open", "Mouth Wide Open", "Teeth Not Visible", "No Beard", "Goatee",
    "Round Jaw", "Double Chin", "Wearing Hat", "Oval Face", "Square Face", "Round Face",
    "Color Photo", "Posed Photo", "Attractive Man", "Attractive Woman", "Indian", "Gray Hair",
    "Bags Under Eyes", "Heavy Makeup", "Rosy Cheeks", "Shiny Skin", "Pale Skin",
    "5 o' Clock Shadow", "Strong Nose-Mouth Lines", "Wearing Lipstick", "Flushed Face",
    "High Cheekbones", "Brown Eyes", "Wearing Earrings", "Wearing Necktie", "Wearing Necklace")
# faces attribute -> (Kumar name when present, Kumar name when absent).
_KUMAR_PAIRS = {"older": ("Senior", "Youth"), "mouth_open": ("Mouth Slightly Open", "Mouth Closed"),
                "eyes_open": ("Eyes Open", "Narrow Eyes"), "smiling": ("Smiling", "Frowning"),
                "moustache": ("Mustache", "No Beard"), "eyeglasses": ("Eyeglasses", "No Eyewear")}
_CELEB_A_MAP = {"older": ("Young", False), "mouth_open": ("Mouth_Slightly_Open", True),
                "eyes_open": ("Narrow_Eyes", False), "smiling": ("Smiling", True),
                "moustache": ("Mustache", True), "eyeglasses": ("Eyeglasses", True)}
LFW_PERSONS = 36
LFW_TEST_NAMES = ("Person_00_0001", "Person_01_0001")
CELEB_A_TEST_NAMES = ("000001.jpg", "000002.jpg")
FOLDER_TEST_NAMES = ("shots/img_000.png", "shots/img_001.png")


class FakePaths(NamedTuple):
  lfw_manual: Path
  celeb_a_manual: Path
  folder: Path
  csv: Path


def _faces(count: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
  """`count` 64² faces whose six attributes are each present with probability ½."""
  rng = np.random.default_rng(seed)
  images, flags = [], rng.random((count, len(faces.ATTRIBUTES))) < 0.5
  for i in range(count):
    p = faces.with_attributes(faces.sample_face(seed * 10_000 + i),
                              **{a: bool(f) for a, f in zip(faces.ATTRIBUTES, flags[i])})
    images.append(np.round(faces.render(p, 64).image * 255).astype(np.uint8))
  return images, flags


def _place(face: np.ndarray, shape: tuple[int, int], box: tuple[int, int, int]) -> bytes:
  """A JPEG of `shape` with `face` scaled into the square `box = (top, left, side)`."""
  top, left, side = box
  canvas = np.empty(shape + (3,), np.uint8)
  canvas[...] = face[0].mean(axis=0).astype(np.uint8)  # the face's top-row colour
  canvas[top:top + side, left:left + side] = np.asarray(
      Image.fromarray(face).resize((side, side), Image.Resampling.BICUBIC))
  out = io.BytesIO()
  Image.fromarray(canvas).save(out, "JPEG", quality=90)
  return out.getvalue()


def _write_checksums(manual_dir: Path, dataset: str) -> None:
  """`checksums.tsv` registering the fakes under tfds's own URLs for `dataset`."""
  lines = []
  for f in common.registered_files(dataset):
    path = manual_dir / f.filename
    lines.append(f"{f.url}\t{path.stat().st_size}\t{common.sha256_file(path)}\t{f.filename}")
  (manual_dir / "checksums.tsv").write_text("\n".join(lines) + "\n")


def make_lfw(manual_dir: str | Path, persons: int = LFW_PERSONS, seed: int = 1) -> Path:
  """`lfw.tgz` (2 images per person plus one without attributes) and `lfw_attributes.txt`."""
  manual_dir = Path(manual_dir)
  manual_dir.mkdir(parents=True, exist_ok=True)
  images, flags = _faces(2 * persons + 1, seed)
  rng = np.random.default_rng(seed)
  stems, rows = [], []
  with tarfile.open(manual_dir / "lfw.tgz", "w:gz") as tar:
    for i, face in enumerate(images):
      person = f"Person_{i // 2:02d}" if i < 2 * persons else "Unlabelled_Person"
      stem = f"{person}_{i % 2 + 1:04d}" if i < 2 * persons else f"{person}_0001"
      data = _place(face, (250, 250), (50, 50, 150))
      info = tarfile.TarInfo(f"lfw/{person}/{stem}.jpg")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
      if i < 2 * persons:
        stems.append(stem)
        scores = rng.normal(0.0, 1.0, len(KUMAR_ATTRIBUTES))
        for a, has in zip(faces.ATTRIBUTES, flags[i]):
          yes, no = _KUMAR_PAIRS[a]
          strength = 1.0 + rng.random()
          scores[KUMAR_ATTRIBUTES.index(yes)] = strength if has else -strength
          scores[KUMAR_ATTRIBUTES.index(no)] = -strength if has else strength
        # Nine in ten are men; the test persons surely (top scores: in the binarised Male set).
        male = 2.0 + rng.random() if rng.random() < 0.9 else -2.0 - rng.random()
        male = 4.0 + rng.random() if i < 4 else male
        scores[0] = male
        rows.append(scores)
  header = "\t".join(["#", "person", "imagenum", *KUMAR_ATTRIBUTES])
  lines = ["# Fake lfw_attributes.txt in the layout of Kumar et al.'s file", header]
  for stem, scores in zip(stems, rows):
    person, number = stem.rsplit("_", 1)
    lines.append("\t".join([person.replace("_", " "), str(int(number)),
                            *(f"{v:.6f}" for v in scores)]))
  lines.append("\t".join(["Absent Person", "1", *("0.5" for _ in KUMAR_ATTRIBUTES)]))
  (manual_dir / "lfw_attributes.txt").write_text("\n".join(lines) + "\n")
  _write_checksums(manual_dir, "lfw")
  return manual_dir


def make_celeb_a(manual_dir: str | Path, count: int = 48, seed: int = 2) -> Path:
  """CelebA's five files for `count` images, split 60/20/20 percent."""
  manual_dir = Path(manual_dir)
  manual_dir.mkdir(parents=True, exist_ok=True)
  images, flags = _faces(count, seed)
  rng = np.random.default_rng(seed)
  names = [f"{i + 1:06d}.jpg" for i in range(count)]
  with zipfile.ZipFile(manual_dir / "img_align_celeba.zip", "w") as z:
    for name, face in zip(names, images):
      z.writestr(f"img_align_celeba/{name}", _place(face, (218, 178), (40, 15, 148)))
  attrs = rng.random((count, len(celeb_a.ATTRIBUTES))) < 0.3
  for j, a in enumerate(faces.ATTRIBUTES):
    column, same = _CELEB_A_MAP[a]
    attrs[:, celeb_a.ATTRIBUTES.index(column)] = flags[:, j] == same
  attrs[:, celeb_a.ATTRIBUTES.index("No_Beard")] = ~attrs[:, celeb_a.ATTRIBUTES.index("Mustache")]
  attrs[:, celeb_a.ATTRIBUTES.index("Male")] = rng.random(count) < 0.8
  attrs[:2, celeb_a.ATTRIBUTES.index("Male")] = True
  partition = np.where(np.arange(count) < 0.6 * count, 0,
                       np.where(np.arange(count) < 0.8 * count, 1, 2))

  def write(filename, lines):
    (manual_dir / filename).write_text("\n".join(lines) + "\n")

  write("list_eval_partition.txt", [f"{n} {p}" for n, p in zip(names, partition)])
  write("list_attr_celeba.txt", [str(count), " ".join(celeb_a.ATTRIBUTES)] +
        [f"{n} " + " ".join(" 1" if v else "-1" for v in row) for n, row in zip(names, attrs)])
  landmarks = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x " \
              "leftmouth_y rightmouth_x rightmouth_y"
  write("list_landmarks_align_celeba.txt", [str(count), landmarks] +
        [f"{n} 69 109 106 113 77 142 73 152 108 154" for n in names])
  write("identity_CelebA.txt", [f"{n} {1 + i // 3}" for i, n in enumerate(names)])
  _write_checksums(manual_dir, "celeb_a")
  return manual_dir


def make_folder(folder: str | Path, count: int = 40, seed: int = 3) -> Path:
  """`count` PNGs under `folder/shots/` and `folder/attributes.csv` with binary columns and a
  real-valued one; returns the CSV's path."""
  folder = Path(folder)
  (folder / "shots").mkdir(parents=True, exist_ok=True)
  images, flags = _faces(count, seed)
  rng = np.random.default_rng(seed)
  lines = ["name,smiling,eyeglasses,moustache,age_score"]
  for i, (face, f) in enumerate(zip(images, flags)):
    Image.fromarray(face).save(folder / "shots" / f"img_{i:03d}.png")
    age = (1.0 if f[faces.ATTRIBUTES.index("older")] else -1.0) * (0.5 + rng.random())
    lines.append(f"shots/img_{i:03d}.png,{int(f[3])},{'true' if f[5] else 'false'},"
                 f"{int(f[4])},{age:.3f}")
  csv_path = folder / "attributes.csv"
  csv_path.write_text("\n".join(lines) + "\n")
  return csv_path


def make_all(out: str | Path) -> FakePaths:
  out = Path(out)
  return FakePaths(make_lfw(out / "lfw_manual"), make_celeb_a(out / "celeb_a_manual"),
                   out / "folder", make_folder(out / "folder"))


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  args = [a for a in sys.argv[1:] if a.startswith("--out=")]
  if len(args) != 1 or len(sys.argv) != 2:
    sys.exit("usage: python -m dfi_jax.data.datasets.fakes --out=DIR")
  paths = make_all(args[0].split("=", 1)[1])
  print("\n".join(f"{k}: {v}" for k, v in paths._asdict().items()))
