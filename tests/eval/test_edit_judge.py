"""The attribute judge inside the edit run: per-edit success, preservation and the judge-scored
two-alternative choice between DFI and the pixel baseline; photos labelled by the judge."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ml_collections import ConfigDict

from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from dfi_jax.runs import report
from dfi_jax.data import faces
from dfi_jax.data import sources
from experiments.configs import synthetic


def _held_out(n: int = 4, size: int = 64):
  """Faces lacking all six attributes, with every counterfactual (seeds no one trains on)."""
  chosen, seed = [], 60_000_000
  while len(chosen) < n:
    p = faces.sample_face(seed)
    if not any(p.attributes):
      chosen.append(p)
    seed += 1
  images = np.stack([faces.render(p, size).image for p in chosen])
  cfs = {a: np.stack([faces.counterfactual(p, a, size).image for p in chosen])
         for a in faces.ATTRIBUTES}
  attrs = np.zeros((n, len(faces.ATTRIBUTES)), bool)
  return sources.TestImages([f"f{i}" for i in range(n)], images, attrs, counterfactuals=cfs)


@pytest.mark.parametrize("dfi_is_true", [True, False])
def test_the_choice_prefers_the_edit_that_adds_the_attribute(dfi_is_true):
  tests = _held_out()
  items = [(i, a) for a in ("moustache", "eyeglasses", "smiling") for i in range(4)]
  truth = np.stack([tests.counterfactuals[a][i] for i, a in items])
  nothing = tests.images[[i for i, _ in items]]
  results = (truth if dfi_is_true else nothing)[None]
  baselines = {item: ((nothing if dfi_is_true else truth)[j], 0.0, 1.0)
               for j, item in enumerate(items)}
  rows = [dict(image=tests.names[i], attribute=a) for i, a in items]
  config = ConfigDict(dict(judge="default", deltas=(1.0,)))
  record = report.add_judge_scores(config, rows, tests, items, results,
                                   np.ones((1, len(items)), bool), baselines)
  success = np.mean([r["judge_success"] for r in rows])
  base_success = np.mean([r["baseline_judge_success"] for r in rows])
  prefers = np.mean([r["judge_prefers_dfi"] for r in rows])
  truth_prefers = np.mean([r["judge_prefers_truth"] for r in rows])
  if dfi_is_true:
    assert success >= 0.9 and base_success <= 0.1 and prefers >= 0.9 and truth_prefers >= 0.9
  else:  # the baseline is the truth itself: every choice against it a tie
    assert success <= 0.1 and base_success >= 0.9 and prefers <= 0.1 and truth_prefers == 0.5
  assert all(r["judge_preservation"] >= 0.8 for r in rows)
  assert set(record["accuracy_on_this_run"]) == {"moustache", "eyeglasses", "smiling"}
  assert min(record["accuracy_on_this_run"].values()) >= 0.9


def test_a_tiny_run_reports_the_judge(tmp_path):
  config = synthetic.get_config("tiny")
  config.judge = "default"
  config.attributes = ("moustache", "eyeglasses")
  record = edit_run.run(config, tmp_path / "run")
  rows = record["per_image"]
  assert rows and all(r["judge_success"] in (0.0, 1.0) and 0 <= r["judge_preservation"] <= 1
                      and r["judge_prefers_dfi"] in (0.0, 0.5, 1.0) for r in rows)
  summary = record["summary"]["d0.8"]["moustache"]
  assert {"judge_success", "judge_preservation", "judge_prefers_dfi", "judge_prefers_truth",
          "baseline_judge_success"} <= set(summary)
  saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert saved["judge"]["held_out_accuracy"]["64"]["mean"] > 0.9
  page = (tmp_path / "run" / "index.html").read_text()
  assert saved["judge"]["sha256"] and "judge prefers DFI" in page and "truth : pixel" in page


def test_a_bad_judge_file_fails_before_any_work(tmp_path):
  config = synthetic.get_config("tiny")
  bad = tmp_path / "judge.npz"
  bad.write_bytes(b"not a judge")
  config.judge = str(bad)
  with pytest.raises(kit.RunError, match=r"--config.judge=.*judge.npz"):
    edit_run.run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_photos_are_labelled_by_the_judge_on_a_generated_bank():
  tests = _held_out(2)
  with_glasses = tests.counterfactuals["eyeglasses"]
  photos = sources.TestImages(["p0", "p1"], with_glasses)
  bank = sources.Bank(with_glasses, np.zeros((2, 6), bool), faces.ATTRIBUTES, ["a", "b"], ())
  labelled = kit.judged_attributes(ConfigDict(dict(judge="default")), photos, bank)
  assert labelled.attributes.shape == (2, 6)
  assert labelled.attributes[:, faces.ATTRIBUTES.index("eyeglasses")].all()
  other = bank._replace(attribute_names=("Male",) * 6)
  assert kit.judged_attributes(ConfigDict(dict(judge="default")), photos,
                                    other).attributes is None
