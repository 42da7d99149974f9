"""Tests for dfi_jax.eval.study.stimuli on fake runs made here (tiny PNGs, no model)."""

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfi_jax.data import image_io
from dfi_jax.eval.study import stimuli
from dfi_jax.eval.study.stimuli import StudyError
from fake_runs import fake_run

IMAGES = ["face1", "face2", "face3", "face4"]
ATTRIBUTES = ["older", "smiling", "eyeglasses"]


@pytest.fixture
def run(tmp_path):
  fake_run(tmp_path / "run", IMAGES, ATTRIBUTES, deltas=(0.5, 1.0),
           baseline_dir=tmp_path / "pixel")
  return tmp_path


def build(root, out="study", **kw):
  kw.setdefault("baseline_dirs", [root / "pixel"])
  return stimuli.build_study([root / "run"], root / out, **kw)


def page_data(folder):
  text = (Path(folder) / "trials.js").read_text()
  start = text.index("window.STUDY = ") + len("window.STUDY = ")
  return json.loads(text[start:text.index(";\nwindow.TRIALS")])


def sha(path):
  return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_main_trials_pair_each_edit_with_its_baseline(run):
  m = build(run)
  main = [t for t in m["trials"] if t["kind"] == "main"]
  assert len(main) == m["num_main_trials_total"] == len(IMAGES) * len(ATTRIBUTES)
  assert m["deltas"] == [1.0] and m["methods"] == ["pixel"]  # default: the run's largest δ
  folder = run / "study"
  for t in main:
    dfi, other = t["dfi_side"], "right" if t["dfi_side"] == "left" else "left"
    assert t[f"{dfi}_method"] == "dfi" and t[f"{other}_method"] == "pixel"
    assert t[f"{dfi}_source"].endswith(f"edits/{t['image']}__{t['attribute']}__d1.png")
    assert t[f"{other}_source"].endswith(f"pixel/{t['image']}__{t['attribute']}.png")
    for side in ("left", "right"):  # the copy is the source, under a content name
      assert sha(folder / t[side]) == sha(t[f"{side}_source"])
      assert Path(t[side]).name.startswith(sha(t[f"{side}_source"])[:16])
  sides = [t["dfi_side"] for t in main]
  assert 0 < sides.count("left") < len(sides)


def test_attention_checks_pair_an_edit_with_its_scrambled_copy(run):
  m = build(run, attention_fraction=0.25, min_attention=2)
  checks = [t for t in m["trials"] if t["kind"] == "attention"]
  assert len(checks) == m["num_attention_trials"] == 3  # ceil(0.25 · 12)
  folder = run / "study"
  for t in checks:
    right_answer = t["correct_side"]
    wrong = "right" if right_answer == "left" else "left"
    assert t[f"{wrong}_method"] == "foil" and t[f"{wrong}_source"] is None
    intact = image_io.load_image(folder / t[right_answer])
    foil = image_io.load_image(folder / t[wrong])
    assert sha(folder / t[right_answer]) == sha(t[f"{right_answer}_source"])
    assert intact.shape == foil.shape and not np.array_equal(intact, foil)
    # Same pixels, other places: a permutation of blocks.
    np.testing.assert_allclose(np.sort(intact.ravel()), np.sort(foil.ravel()))
    assert t["prompt"] == stimuli.prompt(t["attribute"])


def test_same_seed_same_study_other_seed_other_sides(run):
  a, b = build(run, "a"), build(run, "b")
  assert a == b
  for name in ("trials.js", "trials.csv", "trials.json"):
    assert (run / "a" / name).read_bytes() == (run / "b" / name).read_bytes()
  c = build(run, "c", seed=1)
  assert c["study_id"] != a["study_id"]
  side = lambda m: {t["id"]: t["dfi_side"] for t in m["trials"] if t["kind"] == "main"}
  assert side(a) != side(c)


@pytest.mark.parametrize("num_shards", [2, 5, 13, 20])
def test_shards_cover_every_main_trial_exactly_once(run, num_shards):
  whole = build(run, "whole")
  ids = {t["id"]: t for t in whole["trials"] if t["kind"] == "main"}
  seen = []
  for k in range(num_shards):
    m = build(run, "sharded", num_shards=num_shards, shard_index=k)
    folder = run / "sharded" / f"shard_{k:03d}_of_{num_shards:03d}"
    assert json.loads((folder / "trials.json").read_text()) == m
    assert m["study_id"] == whole["study_id"] and m["num_main_trials_total"] == len(ids)
    main = [t for t in m["trials"] if t["kind"] == "main"]
    checks = [t for t in m["trials"] if t["kind"] == "attention"]
    assert len(checks) == (3 if main else 0)
    for t in main:  # the same trial, sides included, as in the unsharded study
      assert t == ids[t["id"]]
    seen += [t["id"] for t in main]
  assert sorted(seen) == sorted(ids)


def test_page_data_has_no_answers_and_page_files_are_copied(run):
  m = build(run)
  data = page_data(run / "study")
  assert data["study_id"] == m["study_id"]
  assert [t["id"] for t in data["trials"]] == [t["id"] for t in m["trials"]]
  for t in data["trials"]:
    assert set(t) == {"id", "attribute", "prompt", "left", "right"}
  for name in stimuli.PAGE_FILES:
    assert (run / "study" / name).read_bytes() == (stimuli.PAGE_DIR / name).read_bytes()
  html = (run / "study" / "index.html").read_text()
  assert 'src="trials.js"' in html and "http" not in html  # nothing fetched from anywhere
  with open(run / "study" / "trials.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["id"] for r in rows] == [t["id"] for t in m["trials"]]
  assert rows[0].keys() == set(stimuli.MANIFEST_COLUMNS)


def test_run_baselines_folder_and_several_deltas(run):
  base = run / "run" / "baselines"
  base.mkdir()
  for name in IMAGES[:2]:
    image_io.save_png(base / f"{name}__older__latent.png", np.zeros((8, 8, 3)))
  m = build(run, baseline_dirs=[], deltas=[0.5, 1.0])
  main = [t for t in m["trials"] if t["kind"] == "main"]
  assert {(t["image"], t["delta"], t["baseline"]) for t in main} == {
      (n, d, "latent") for n in IMAGES[:2] for d in (0.5, 1.0)}
  assert len(m["unmatched"]) == 2 * (len(IMAGES) * len(ATTRIBUTES) - 2)


def test_rerun_keeps_stored_images(run):
  build(run)
  stamps = {p: p.stat().st_mtime_ns for p in (run / "study" / "images").iterdir()}
  build(run)
  assert {p: p.stat().st_mtime_ns for p in (run / "study" / "images").iterdir()} == stamps


def test_bad_inputs_raise_one_line_naming_the_problem(run, tmp_path):
  with pytest.raises(StudyError, match="not a transform run"):
    stimuli.build_study([tmp_path / "nowhere"], tmp_path / "s", baseline_dirs=[run / "pixel"])
  with pytest.raises(StudyError, match=r"no edits at δ=\[0.7\]"):
    build(run, deltas=[0.7])
  with pytest.raises(StudyError, match="no baseline images"):
    build(run, baseline_dirs=[])
  (run / "other").mkdir()
  image_io.save_png(run / "other" / "face1__frowning.png", np.zeros((8, 8, 3)))
  with pytest.raises(StudyError, match="no DFI edit has a baseline"):
    build(run, baseline_dirs=[run / "other"])
  image_io.save_png(run / "other" / "badname.png", np.zeros((8, 8, 3)))
  with pytest.raises(StudyError, match="badname.png: expected a name"):
    build(run, baseline_dirs=[run / "other"])
  (run / "run" / "edits" / "face1__older__d1.png").unlink()
  with pytest.raises(StudyError, match="face1__older__d1.png: listed in metrics.json but missing"):
    build(run)
  with pytest.raises(StudyError, match="shard_index"):
    stimuli.shard_trials([], 2, 2)


def test_prompt_names_the_edit():
  assert stimuli.prompt("older") == ("Which image looks more like a person who is older, while "
                                     "still being the same person?")
  assert "with their mouth open" in stimuli.prompt("mouth_open")
  assert "who is pale skin" in stimuli.prompt("pale_skin")


def test_command_line(run):
  out = subprocess.run(
      [sys.executable, "-m", "experiments.study_stimuli", f"--runs={run / 'run'}",
       f"--baseline_dirs={run / 'pixel'}", f"--out_dir={run / 'cli'}", "--num_shards=2",
       "--shard_index=1"], capture_output=True, text=True, cwd=Path(__file__).parents[2])
  assert out.returncode == 0, out.stderr
  assert "6 of 12 comparisons + 3 attention checks (vs pixel)" in out.stdout
  assert (run / "cli" / "shard_001_of_002" / "index.html").is_file()
  bad = subprocess.run(
      [sys.executable, "-m", "experiments.study_stimuli", f"--runs={run / 'nope'}",
       f"--out_dir={run / 'cli'}"], capture_output=True, text=True,
      cwd=Path(__file__).parents[2])
  assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "nope" in bad.stderr


def test_scramble_keeps_shape_and_pixels():
  image = np.random.default_rng(0).random((27, 31, 3), dtype=np.float32)
  foil = stimuli.scramble(image, np.random.default_rng(1))
  assert foil.shape == image.shape and not np.array_equal(foil, image)
  np.testing.assert_array_equal(np.sort(foil.ravel()), np.sort(image.ravel()))
  np.testing.assert_array_equal(foil[24:], image[24:])  # 27 = 6·4 + 3: the strip stays
