"""LFW and CelebA through tfds's real builders, prepared from fakes in the real layouts, and the
runs on them: the two documented commands, reading without TensorFlow, the joins, the errors.

Preparing runs in subprocesses (it imports TensorFlow); nothing is downloaded: every manual file
is present, and the fakes' sizes and sha256 are registered with `--checksums`.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow_datasets")

from dfi_jax.data import fitting  # noqa: E402
from dfi_jax.data import image_io  # noqa: E402
from dfi_jax.data import banks
from dfi_jax.data import sources  # noqa: E402
from dfi_jax.data.datasets import celeb_a  # noqa: E402
from dfi_jax.data.datasets import common  # noqa: E402
from dfi_jax.data.datasets import crop as crop_lib  # noqa: E402
from dfi_jax.data.datasets import fakes  # noqa: E402
from dfi_jax.data.datasets import lfw  # noqa: E402
from dfi_jax.data.datasets import lfw_attributes  # noqa: E402
from dfi_jax.data.datasets.common import DatasetError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HAS_TF = importlib.util.find_spec("tensorflow") is not None
ENV = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3")


def run(*args, timeout=600):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        env=ENV, timeout=timeout)


def load_config(name, variant="tiny", **overrides):
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments/configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(variant)
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("fakes")
  fakes.make_all(out)
  return out


@pytest.fixture(scope="module")
def prepared(fake_dir):
  """Both prepare commands, as documented, run side by side; returns (data_dir, stdout)."""
  if not HAS_TF:
    pytest.skip("preparing needs TensorFlow: pip install -e '.[prepare]'")
  data_dir = fake_dir / "tfds"
  procs = {}
  for dataset in ("lfw", "celeb_a"):
    manual = fake_dir / f"{dataset}_manual"
    procs[dataset] = subprocess.Popen(
        [sys.executable, "-m", "experiments.prepare_data", f"--dataset={dataset}",
         f"--manual_dir={manual}", f"--data_dir={data_dir}",
         f"--checksums={manual / 'checksums.tsv'}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
  out = {}
  for dataset, proc in procs.items():
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    out[dataset] = stdout
  return data_dir, out


def test_prepare_lfw_reports_both_kinds_of_missing_image(prepared):
  data_dir, out = prepared
  assert ("lfw: 73 images prepared" in out["lfw"]
          and "72 images with attributes; 1 images without a row in lfw_attributes.txt: "
              "Unlabelled_Person_0001; 1 attribute rows without an image: Absent_Person_0001"
          in out["lfw"]), out["lfw"]
  assert list((data_dir / "lfw").glob("*/lfw-train.array_record-*"))
  report = json.loads((data_dir / "dfi_jax_index" / "lfw_report.json").read_text())
  assert report["bank_size"] == 72 and report["num_records"] == 73
  assert report["attribute_gender"]["Female"] == "Female"
  assert "celeb_a: prepared" in out["celeb_a"] and "train 29 images" in out["celeb_a"]
  assert list((data_dir / "celeb_a").glob("*/celeb_a-test.array_record-*"))


def test_reading_needs_no_tensorflow(prepared):
  data_dir, _ = prepared
  code = f"""
import importlib.util, sys
from dfi_jax.data import banks
for name in ("lfw_demo1", "celeb_a"):
  spec = importlib.util.spec_from_file_location(name, "experiments/configs/" + name + ".py")
  m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
  c = m.get_config("tiny"); c.data_dir = {str(data_dir)!r}
  bank = banks.load_bank(c)
  assert bank.images[[0, len(bank.images) - 1]].shape == (2, 32, 32, 3)
assert "tensorflow" not in sys.modules, "reading imported TensorFlow"
print("ok")
"""
  proc = run("-c", code)
  assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


def test_lfw_bank_is_the_join_in_attribute_file_order(prepared, fake_dir):
  data_dir, _ = prepared
  config = load_config("lfw_demo1", data_dir=str(data_dir), image_size=40)
  bank = banks.load_bank(config)
  table = lfw_attributes.parse(fake_dir / "lfw_manual" / "lfw_attributes.txt")
  binary = lfw_attributes.binarise(table)
  assert bank.names == table.names[:-1]  # the last row has no image
  np.testing.assert_array_equal(bank.attributes, binary.attributes[:-1])
  assert bank.attribute_names == binary.attribute_names
  np.testing.assert_array_equal(bank.group, binary.group[:-1])
  assert [e.name for e in bank.edits[:6]] == list(lfw_attributes.DEMO1_EDITS)
  # Each bank image is its own file from lfw.tgz, cropped and resized.
  with tarfile.open(fake_dir / "lfw_manual" / "lfw.tgz") as tar:
    for i in (0, 17, 71):
      person = bank.names[i].rsplit("_", 1)[0]
      jpeg = tar.extractfile(f"lfw/{person}/{bank.names[i]}.jpg")
      want = crop_lib.crop_and_resize(np.asarray(Image.open(jpeg).convert("RGB")),
                                      crop_lib.LFW_CROP, 40)
      np.testing.assert_array_equal(bank.images[i], want)


def test_celeb_a_bank_names_attributes_and_crop(prepared, fake_dir):
  data_dir, _ = prepared
  manual = fake_dir / "celeb_a_manual"
  lines = (manual / "list_attr_celeba.txt").read_text().splitlines()
  want = {l.split()[0]: [int(v) > 0 for v in l.split()[1:]] for l in lines[2:]}
  partition = dict(l.split() for l in (manual / "list_eval_partition.txt").read_text().split("\n")
                   if l)
  for split, code in (("train", "0"), ("test", "2")):
    bank = banks.load_bank(load_config("celeb_a", data_dir=str(data_dir), split=split))
    assert sorted(bank.names) == sorted(n for n, p in partition.items() if p == code)
    rows = np.asarray([want[n] for n in bank.names])
    np.testing.assert_array_equal(bank.attributes[:, :40], rows)
    np.testing.assert_array_equal(bank.attributes[:, 40], ~rows[:, celeb_a.ATTRIBUTES.index("Young")])
    assert bank.attribute_names[-2:] == ("Old", "Eyes_Open")
  with zipfile.ZipFile(manual / "img_align_celeba.zip") as z:
    original = np.asarray(Image.open(z.open(f"img_align_celeba/{bank.names[0]}")).convert("RGB"))
  assert original.shape == celeb_a.IMAGE_SHAPE
  np.testing.assert_array_equal(bank.images[0],
                                crop_lib.crop_and_resize(original, crop_lib.CELEB_A_CROP, 32))


def test_demo1_tiny_run_writes_the_official_grid_layout(prepared, tmp_path):
  """The second documented command, on the fakes: rows = test images, original + six edits."""
  data_dir, _ = prepared
  proc = run("-m", "experiments.transform", "--config=experiments/configs/lfw_demo1.py:tiny",
             f"--config.data_dir={data_dir}", "--config.deltas=(0.4,)",
             f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = json.loads((tmp_path / "metrics.json").read_text())
  assert record["images"] == list(fakes.LFW_TEST_NAMES)
  assert record["settings"]["attributes"] == list(lfw_attributes.DEMO1_EDITS)
  assert record["settings"]["data"] == "lfw" and not record["failures"]
  assert len(record["outputs"]["edits"]) == 2 * 6
  grid = Image.open(tmp_path / "grid.png")
  assert grid.width > grid.height * 2.5  # 7 columns, 2 rows


def test_test_image_without_attributes_is_a_clear_error_and_photos_still_work(prepared, tmp_path):
  data_dir, _ = prepared
  config = load_config("lfw_demo1", data_dir=str(data_dir))
  bank = banks.load_bank(config)
  with pytest.raises(ValueError, match="Unlabelled_Person_0001.*not in the bank.*--inputs"):
    sources.bank_tests(bank, ["Unlabelled_Person_0001"])
  photo = tmp_path / "me.png"
  Image.fromarray(np.full((50, 40, 3), 120, np.uint8)).save(photo)
  tests = sources.photo_tests(config.image_size, [str(photo)])  # what --inputs reads
  assert tests.attributes is None and tests.images.shape == (1, 32, 32, 3)  # φ neighbours


def test_not_prepared_says_which_command(tmp_path):
  for name, dataset in (("lfw_demo1", "lfw"), ("celeb_a", "celeb_a")):
    with pytest.raises(DatasetError, match=f"not prepared.*prepare_data --dataset={dataset}"):
      banks.load_bank(load_config(name, data_dir=str(tmp_path)))


# ------------------------------------------------------------------------- manual-file errors


def test_missing_manual_files_say_which_where_and_what(fake_dir, tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  with pytest.raises(DatasetError, match=r"missing manual file lfw_attributes.txt: put it at "
                     + str(manual / "lfw_attributes.txt")):
    lfw.prepare(manual, tmp_path / "data")
  shutil.copy(fake_dir / "lfw_manual" / "lfw_attributes.txt", manual)
  with pytest.raises(DatasetError) as e:
    lfw.prepare(manual, tmp_path / "data")
  msg = str(e.value)
  assert ("missing manual file lfw.tgz" in msg and str(manual / "lfw.tgz") in msg
          and "180,566,744 bytes" in msg
          and "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0" in msg)
  for name in ("img_align_celeba.zip", "identity_CelebA.txt"):
    partial = tmp_path / f"celeb_{name}"
    shutil.copytree(fake_dir / "celeb_a_manual", partial)
    (partial / name).unlink()
    expected = common.read_checksums_tsv(partial / "checksums.tsv")
    with pytest.raises(DatasetError, match=f"celeb_a: missing manual file {name}: put it at"):
      celeb_a.prepare(partial, tmp_path / "data", expected)


def test_wrong_archives_say_what_was_found_and_expected(fake_dir, tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(fake_dir / "lfw_manual", manual)
  # The fake against tfds's registered checksum: wrong size.
  with pytest.raises(DatasetError, match=r"lfw.tgz is [\d,]+ bytes, expected 180,566,744 bytes"):
    lfw.prepare(manual, tmp_path / "data")
  # Same size, one byte changed: wrong sha256.
  expected = common.read_checksums_tsv(manual / "checksums.tsv")
  data = bytearray((manual / "lfw.tgz").read_bytes())
  data[-1] ^= 1
  (manual / "lfw.tgz").write_bytes(bytes(data))
  with pytest.raises(DatasetError, match="lfw.tgz has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}"):
    lfw.prepare(manual, tmp_path / "data", expected)
  assert not (tmp_path / "data" / "lfw").exists()  # nothing was prepared


def test_prepare_cli_error_is_one_line(tmp_path):
  proc = run("-m", "experiments.prepare_data", "--dataset=lfw", f"--manual_dir={tmp_path}",
             f"--data_dir={tmp_path / 'data'}")
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: DatasetError: lfw: missing manual file lfw_attributes.txt")


# ------------------------------------------------------------------------------- folder bank


def test_folder_bank_streams_and_reports_missing(fake_dir, tmp_path, capsys):
  folder_dir = tmp_path / "folder"
  shutil.copytree(fake_dir / "folder", folder_dir)
  csv = folder_dir / "attributes.csv"
  csv.write_text(csv.read_text() + "shots/gone.png,1,true,0,0.5\n")
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder_dir / "shots" / "extra.png")
  config = load_config("folder", folder=str(folder_dir), csv=str(csv), group_column="eyeglasses")
  bank = banks.load_bank(config)
  out = capsys.readouterr().out
  assert ("40 images with attributes; 1 listed in" in out and "shots/gone.png" in out
          and "1 images in the folder not in the CSV: shots/extra.png" in out), out
  assert len(bank.images) == 40 and bank.attributes.shape == (40, 4)
  assert [e.name for e in bank.edits] == ["smiling", "eyeglasses", "age_score"]
  np.testing.assert_array_equal(bank.group, bank.attributes[:, 1])
  want = fitting.fit_square(image_io.load_image(folder_dir / "shots" / "img_003.png"), 32)[0]
  np.testing.assert_array_equal(bank.images[3], want)  # fit = "pad"
  tests = sources.bank_tests(bank, fakes.FOLDER_TEST_NAMES)
  assert list(tests.bank_index) == [0, 1]


def test_note_when_test_image_is_outside_the_edits_gender_set(prepared, capsys):
  data_dir, _ = prepared
  probe = banks.load_bank(load_config("lfw_demo1", data_dir=str(data_dir)))
  outside = probe.names[int(np.flatnonzero(probe.group == 2)[0])]  # in neither gender set
  capsys.readouterr()
  banks.load_bank(load_config("lfw_demo1", data_dir=str(data_dir),
                                test_names=(fakes.LFW_TEST_NAMES[0], outside)))
  out = capsys.readouterr().out
  assert f"note: {outside} is in the neither set but 'Senior' is a Male attribute" in out
  assert fakes.LFW_TEST_NAMES[0] not in out
