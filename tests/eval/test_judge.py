"""The independent attribute judge: the shipped file's held-out accuracy and counterfactual flips,
a random-label control of the training/evaluation split, edit scoring, files and the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from dfi_jax.data import faces
from dfi_jax.eval import judge as judge_lib
from dfi_jax.eval import judge_augment
from dfi_jax.eval import judge_train
from dfi_jax.nets import pretrained
from dfi_jax.nets import weights as weights_lib
from experiments.configs import judge as judge_config

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTES = judge_lib.ATTRIBUTES
# Faces no run and no judge training or measurement uses (training: 40,000,000…, the
# provenance's measurements: 50,000,000…).
FRESH_SEED = 51_000_000


@pytest.fixture(scope="module")
def shipped():
  return judge_lib.load()


def balanced_accuracy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """`[A]` mean of the true-positive and true-negative rates: 0.5 for any constant guess."""
  pred = probs > 0.5
  tpr = (pred & labels).sum(0) / np.maximum(labels.sum(0), 1)
  tnr = (~pred & ~labels).sum(0) / np.maximum((~labels).sum(0), 1)
  return (tpr + tnr) / 2


def test_shipped_judge_is_accurate_on_fresh_faces_at_every_size(shipped):
  params, prov = shipped
  images, labels = faces.generate(range(FRESH_SEED, FRESH_SEED + 400), 64)
  acc = judge_lib.accuracy(params, images, labels)
  # Measured on 2000 faces when it was made: 99.3-100 % per attribute at 64², 96² and 128².
  low = {a: acc[a] for a in ATTRIBUTES if acc[a] < 0.97}
  assert not low, f"held-out accuracy at 64² below 0.97: {low}"
  # Bigger renders get the same verdicts (predict resizes them to 64²).
  big, big_labels = faces.generate(range(FRESH_SEED, FRESH_SEED + 100), 128)
  acc = judge_lib.accuracy(params, big, big_labels)
  low = {a: acc[a] for a in ATTRIBUTES if acc[a] < 0.96}
  assert not low, f"held-out accuracy at 128² below 0.96: {low}"
  # The provenance says how to remake it and what was measured.
  assert "experiments.train_judge" in prov["made_by"]
  assert set(prov["held_out"]["accuracy"]) >= {"64", "96", "128"}


def test_shipped_judge_flips_on_counterfactual_pairs(shipped):
  params, _ = shipped
  pairs = judge_train.counterfactual_pairs(range(FRESH_SEED + 1000, FRESH_SEED + 1012), 64)
  rates = judge_train.flip_rates(params, pairs)
  assert rates["mean"] >= 0.95, rates  # measured on 200 pairs: 98.5-100 % per attribute
  assert min(rates[a] for a in ATTRIBUTES) >= 0.83, rates


def labels_of(seeds) -> np.ndarray:
  return np.array([faces.sample_face(s).attributes for s in seeds])


def test_random_label_control():
  """The tiny config (without augmentation, to stay fast) learns real labels but not random ones.

  Random labels are a fixed function of the face (the labels of another face, seed + 777), and
  the evaluation faces get theirs the same way: the judge trained on them fits its training faces,
  so it would score above chance had the evaluation faces been training faces.
  """
  config = judge_config.get_config("tiny")
  train_seeds = range(config.train_seed, config.train_seed + 256)
  held_seeds = range(config.eval_seed, config.eval_seed + 384)
  pool = judge_train.render(train_seeds, 64)
  held_images = faces.generate(held_seeds, 64)[0]
  random_labels = lambda seeds: labels_of([s + 777 for s in seeds])
  step = judge_train.make_train_step(judge_train.optimizer_for(config), None)
  scores, fitted = {}, {}
  for name, labelling in (("true", labels_of), ("random", random_labels)):
    train_labels = labelling(train_seeds)
    params, _ = judge_train.fit(config, pool._replace(labels=train_labels), step, progress=False)
    scores[name] = balanced_accuracy(judge_lib.predict(params, held_images), labelling(held_seeds))
    fitted[name] = balanced_accuracy(judge_lib.predict(params, pool.images / 255.0), train_labels)
  np.testing.assert_array_equal(labels_of(train_seeds), pool.labels)
  # 0.5 is chance. The tiny judge learns `older` (grey hair) first.
  assert scores["true"].max() > 0.65, scores
  assert abs(scores["random"].mean() - 0.5) < 0.04, scores
  assert np.abs(scores["random"] - 0.5).max() < 0.1, scores
  # It did fit its random training labels, so evaluating on training faces would show.
  assert fitted["random"].mean() > 0.6, fitted


def test_augment_keeps_shapes_and_does_nothing_at_zero_strength():
  images = faces.generate(range(FRESH_SEED + 3000, FRESH_SEED + 3008), 64)[0]
  # Strengths are traced, so one compilation serves every call (all pass the same arguments).
  augment = jax.jit(judge_augment.augment)
  key, bank = jax.random.key(0), judge_augment.noise_bank(jax.random.key(1), 64, count=4)
  nowhere = np.zeros(images.shape[:3], bool)
  off = judge_augment.Augmentation(**{f: 0.0 for f in judge_augment.Augmentation._fields})
  np.testing.assert_allclose(augment(key, images, off, bank, nowhere), images, atol=1e-5)
  # Mirroring alone: every image comes back as itself or its mirror image, some of each.
  mirrored = np.asarray(augment(key, images, off._replace(p_flip=0.5), bank, nowhere))
  same = [np.allclose(m, x, atol=1e-5) for m, x in zip(mirrored, images)]
  flipped = [np.allclose(m, x[:, ::-1], atol=1e-5) for m, x in zip(mirrored, images)]
  assert all(s or f for s, f in zip(same, flipped)) and any(same) and any(flipped)
  # Region noise alone changes pixels inside the region only.
  region = nowhere.copy()
  region[:, 20:40, 10:30] = True
  noisy = np.asarray(augment(key, images, off._replace(p_region=1.0, region_amplitude=0.2), bank,
                             region))
  changed = np.abs(noisy - images).max(-1) > 1e-6
  assert changed[region].mean() > 0.5 and not changed[~region].any()
  out = np.asarray(augment(key, images, judge_augment.Augmentation(), bank, region))
  assert out.shape == images.shape and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 1.0 and np.abs(out - images).mean() > 0.01


def test_score_edits_on_counterfactuals_and_unchanged_inputs(shipped):
  params, _ = shipped
  plain = faces.with_attributes(faces.sample_face(FRESH_SEED + 2001),
                                **{a: False for a in ATTRIBUTES})
  x = faces.render(plain, 64).image
  cfs = np.stack([faces.counterfactual(plain, a, 64).image for a in ATTRIBUTES])
  inputs = np.stack([x] * len(ATTRIBUTES))
  records = judge_lib.score_edits(params, inputs, cfs, ATTRIBUTES)
  before, after = judge_lib.predict(params, x[None])[0], judge_lib.predict(params, cfs)
  for i, (a, r) in enumerate(zip(ATTRIBUTES, records)):
    others = [j for j in range(len(ATTRIBUTES)) if j != i]
    kept = np.mean((after[i, others] > 0.5) == (before[others] > 0.5))
    assert r["attribute"] == a and r["success"], r
    assert r["probability"] == pytest.approx(after[i, i], abs=1e-6)
    assert r["input_probability"] == pytest.approx(before[i], abs=1e-6)
    assert r["preservation"] == pytest.approx(kept) == 1.0, r  # the judge is right on this face
  # Doing nothing adds nothing and keeps everything.
  for r in judge_lib.score_edits(params, inputs, inputs, ATTRIBUTES):
    assert not r["success"] and r["preservation"] == 1.0 and r["changed"] == [], r
    assert r["probability"] == r["input_probability"]
  # An edit that adds a moustache and glasses: a success that changed one other attribute.
  both = faces.render(faces.with_attributes(plain, moustache=True, eyeglasses=True), 64).image
  (r,) = judge_lib.score_edits(params, x[None], both[None], ["moustache"])
  assert r["success"] and r["changed"] == ["eyeglasses"] and r["preservation"] == 0.8, r
  # Edits at another size than their inputs are fine.
  big = faces.counterfactual(plain, "smiling", 128).image
  (r,) = judge_lib.score_edits(params, x[None], big[None], ["smiling"])
  assert r["success"] and r["preservation"] == 1.0, r
  summary = judge_lib.summarise(records + [dict(r, attribute="older", success=False,
                                                probability=0.0, preservation=0.5)])
  assert summary["older"]["count"] == 2 and summary["older"]["success_rate"] == 0.5
  assert summary["older"]["mean_preservation"] == 0.75
  assert summary["eyeglasses"] == dict(count=1, success_rate=1.0,
                                       mean_probability=records[-1]["probability"],
                                       mean_preservation=1.0)
  with pytest.raises(ValueError, match="unknown attribute"):
    judge_lib.score_edits(params, x[None], x[None], ["beard"])
  with pytest.raises(ValueError, match="one entry per edit"):
    judge_lib.score_edits(params, inputs, inputs, ["older"])
  with pytest.raises(ValueError, match=r"edits must be \[B, S, S, 3\]"):
    judge_lib.score_edits(params, x[None], x[None, :, :32], ["older"])


def test_the_choice_puts_keeping_the_other_attributes_before_probability():
  row = lambda p, kept: dict(probability=p, preservation=kept)  # noqa: E731
  assert judge_lib.choice(row(0.9, 1.0), row(0.99, 1.0)) == 0.0  # the likelier edit wins
  assert judge_lib.choice(row(0.99, 1.0), row(0.9, 1.0)) == 1.0
  assert judge_lib.choice(row(0.9, 1.0), row(0.99, 0.8)) == 1.0  # a leak loses first
  assert judge_lib.choice(row(0.99, 0.8), row(0.9, 1.0)) == 0.0
  assert judge_lib.choice(row(0.99, 0.8), row(0.9, 0.6)) == 1.0  # both leak: probability
  assert judge_lib.choice(row(0.9, 1.0), row(0.9, 1.0)) == 0.5  # a tie


def test_save_load_round_trip_and_bad_files(tmp_path):
  params = judge_lib.init(3, (8, 16, 16))
  prov = judge_lib.provenance_for(params, "test", note="round trip")
  path = judge_lib.save(tmp_path / "j.npz", params, prov, dtype="float32")
  loaded, meta = judge_lib.load(path)
  assert meta["note"] == "round trip" and meta["channels"] == [8, 16, 16]
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(np.asarray(a), b)
  images = faces.generate([5, 6], 64)[0]
  probs = judge_lib.predict(loaded, images)
  assert probs.shape == (2, 6) and probs.dtype == np.float32
  np.testing.assert_allclose(probs, judge_lib.predict(params, images), atol=1e-6)
  # float16 storage (the shipped file's) changes predictions only a little.
  small, _ = judge_lib.load(judge_lib.save(tmp_path / "h.npz", params, prov))
  np.testing.assert_allclose(judge_lib.predict(small, images), probs, atol=1e-2)
  with pytest.raises(judge_lib.JudgeError, match="not found"):
    judge_lib.load(tmp_path / "missing.npz")
  with pytest.raises(judge_lib.JudgeError, match="expected 'dfi_jax-judge-v1'"):
    judge_lib.load(pretrained.RANDOM_WEIGHTS)  # a VGG weights file, not a judge
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(judge_lib.JudgeError, match="not a readable"):
    judge_lib.load(tmp_path / "bad.npz")
  wrong = judge_lib.provenance_for(params, "test")
  wrong["channels"] = [8, 16, 32]
  weights_lib.write_npz(tmp_path / "w.npz", {"conv0/kernel": np.zeros((3, 3, 3, 8))}, wrong)
  with pytest.raises(judge_lib.JudgeError, match="do not match"):
    judge_lib.load(tmp_path / "w.npz")
  with pytest.raises(ValueError, match=r"images must be \[B, S, S, 3\]"):
    judge_lib.predict(params, images[:, :, :40])


def run_cli(*args):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, "-m", "experiments.train_judge", *args], cwd=ROOT,
                        capture_output=True, text=True, env=env, timeout=300)


def test_cli_refuses_bad_flags_and_existing_output(tmp_path):
  existing = tmp_path / "j.npz"
  existing.write_bytes(b"keep me")
  for args, expected in (
      ([f"--out={tmp_path / 'x.npz'}", "--config.steps=abc"], "--config.steps=abc"),
      # The tiny config: were the check missing, the run would be short (and overwrite).
      ([f"--out={existing}", "--config=experiments/configs/judge.py:tiny"], "pass --overwrite"),
  ):
    result = run_cli(*args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and expected in lines[0], result.stderr
  assert existing.read_bytes() == b"keep me"
  assert not (tmp_path / "x.npz").exists()
