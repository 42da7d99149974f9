"""Tests for dfi_jax.eval.study.analysis: hand-made manifests and responses, hand-computed answers."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.eval.study import analysis
from dfi_jax.eval.study.analysis import AnalysisError


def test_bootstrap_interval_matches_binomial_quantiles():
  # Bootstrap of 5 successes in 10 = Binomial(10, 0.5) / 10. P(X <= 1) = 11/1024 < 0.025 <
  # P(X <= 2) = 56/1024, and symmetrically above, so the 95 % interval is [2/10, 8/10].
  rng = np.random.default_rng(0)
  assert analysis.bootstrap_fraction(5, 10, rng) == (0.2, 0.8)
  # 2 of 4: P(X = 0) = 1/16 > 0.025 and P(X <= 3) = 15/16 < 0.975: the whole range.
  assert analysis.bootstrap_fraction(2, 4, rng) == (0.0, 1.0)
  assert analysis.bootstrap_fraction(7, 7, rng) == (1.0, 1.0)
  assert analysis.odds(0.8) == pytest.approx(4.0) and analysis.odds(1.0) == math.inf
  with pytest.raises(ValueError):
    analysis.bootstrap_fraction(3, 2, rng)


def test_bootstrap_is_seeded():
  a = analysis.bootstrap_fraction(31, 50, np.random.default_rng(3))
  b = analysis.bootstrap_fraction(31, 50, np.random.default_rng(3))
  assert a == b and a[0] < 31 / 50 < a[1]


def make_study(root, images=10):
  """A manifest: `images` older trials (DFI left on even ones) and 5 attention checks."""
  trials = [dict(id=f"m{i:05d}", kind="main", attribute="older", delta=1.0, baseline="pixel",
                 dfi_side="left" if i % 2 == 0 else "right", correct_side=None,
                 left=f"images/l{i}.png", right=f"images/r{i}.png") for i in range(images)]
  trials += [dict(id=f"a000_{i:04d}", kind="attention", attribute="older", delta=None,
                  baseline=None, dfi_side=None, correct_side="right" if i % 3 else "left",
                  left=f"images/al{i}.png", right=f"images/ar{i}.png") for i in range(5)]
  root.mkdir(parents=True, exist_ok=True)
  files_lib.atomic_write_json(root / "trials.json", dict(study_id="s1", trials=trials))
  return analysis.load_study([root])


def answer(study, rater, dfi_for, attention_correct):
  """Responses choosing DFI on trials `dfi_for` (indices) and right on `attention_correct`."""
  out = []
  checks = 0
  for t in study.trials.values():
    if t["kind"] == "main":
      other = "right" if t["dfi_side"] == "left" else "left"
      side = t["dfi_side"] if int(t["id"][1:]) in dfi_for else other
    else:
      wrong = "right" if t["correct_side"] == "left" else "left"
      side = t["correct_side"] if checks < attention_correct else wrong
      checks += 1
    out.append(dict(study_id="s1", rater=rater, trial_id=t["id"], choice=side, left=t["left"],
                    right=t["right"], rt_ms=500.0, file=f"{rater}.json"))
  return out


def test_ratios_per_edit_and_raters_dropped(tmp_path):
  study = make_study(tmp_path / "study")
  responses = (answer(study, "good", range(8), attention_correct=5)         # 8 of 10 DFI
               + answer(study, "ok", range(6), attention_correct=4)         # 4/5 = 80 %: kept
               + answer(study, "careless", range(10), attention_correct=3))  # 60 %: dropped
  result = analysis.analyse(study, responses, threshold=0.8)
  assert result["raters"] | {"per_rater": None} == dict(
      total=3, kept=2, dropped=1, dropped_no_checks=0, per_rater=None)
  [edit] = result["edits"]
  assert (edit["method"], edit["attribute"], edit["delta"]) == ("pixel", "older", 1.0)
  assert (edit["n"], edit["dfi"], edit["baseline"]) == (20, 14, 6)
  assert edit["fraction"] == 0.7 and edit["ratio"] == pytest.approx(14 / 6)
  lo, hi = edit["fraction_ci"]
  assert lo < 0.7 < hi
  assert edit["ratio_ci"] == pytest.approx([lo / (1 - lo), hi / (1 - hi)])
  [overall] = result["overall"]
  assert overall["attribute"] == "all" and overall["n"] == 20
  careless = next(r for r in result["raters"]["per_rater"] if r["rater"] == "careless")
  assert careless["attention_accuracy"] == 0.6 and not careless["kept"]
  # Everyone kept at threshold 0: 24 of 30.
  assert analysis.analyse(study, responses, threshold=0.0)["edits"][0]["dfi"] == 24


def test_rater_without_attention_checks_is_dropped(tmp_path):
  study = make_study(tmp_path / "study")
  only_main = [r for r in answer(study, "x", range(10), 5) if r["trial_id"].startswith("m")]
  result = analysis.analyse(study, only_main)
  assert result["raters"]["dropped_no_checks"] == 1 and result["edits"] == []


def test_csv_and_json_exports_read_alike_and_duplicates_count_once(tmp_path):
  study = make_study(tmp_path / "study")
  rows = answer(study, "r1", range(10), 5)
  columns = ["study_id", "shard_index", "rater", "order", "trial_id", "attribute", "choice",
             "left", "right", "rt_ms", "input", "time"]
  with open(tmp_path / "r1.csv", "w", newline="") as f:
    w = csv.DictWriter(f, columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  (tmp_path / "r1.json").write_text(json.dumps(dict(
      study_id="s1", rater="r1", responses=[{k: r[k] for k in ("trial_id", "choice", "left",
                                                                  "right", "rt_ms")}
                                            for r in rows])))
  from_csv = analysis.read_responses(tmp_path / "r1.csv")
  from_json = analysis.read_responses(tmp_path / "r1.json")
  strip = lambda rs: [{k: v for k, v in r.items() if k != "file"} for r in rs]
  assert strip(from_csv) == strip(from_json)
  files = analysis.response_files([tmp_path])
  assert [f.name for f in files] == ["r1.csv", "r1.json"]
  result = analysis.analyse(study, from_csv + from_json)
  assert result["responses"]["duplicates"] == 15 and result["edits"][0]["n"] == 10
  assert result["edits"][0]["ratio"] is None and result["edits"][0]["fraction_ci"] == [1.0, 1.0]


def test_mismatches_raise(tmp_path):
  study = make_study(tmp_path / "study")
  r = answer(study, "r", [], 5)[0]
  with pytest.raises(AnalysisError, match="study s2"):
    analysis.analyse(study, [dict(r, study_id="s2")])
  with pytest.raises(AnalysisError, match="not in the manifests"):
    analysis.analyse(study, [dict(r, trial_id="m99999")])
  with pytest.raises(AnalysisError, match="showed left="):
    analysis.analyse(study, [dict(r, left="images/other.png")])
  (tmp_path / "bad.csv").write_text("study_id,rater,trial_id,choice\ns1,r,m00000,up\n")
  with pytest.raises(AnalysisError, match="bad.csv: response 1 has choice 'up'"):
    analysis.read_responses(tmp_path / "bad.csv")
  with pytest.raises(AnalysisError, match="no trials.json"):
    analysis.load_study([tmp_path / "nowhere"])


def test_write_and_command_line(tmp_path):
  study = make_study(tmp_path / "study")
  rows = answer(study, "r1", range(8), 5) + answer(study, "r2", range(2), 0)
  (tmp_path / "resp").mkdir()
  (tmp_path / "resp" / "all.json").write_text(json.dumps(
      [dict(study_id="s1", rater=rater, responses=[r for r in rows if r["rater"] == rater])
       for rater in ("r1", "r2")]))
  out = subprocess.run(
      [sys.executable, "-m", "experiments.study_analyze", f"--study={tmp_path / 'study'}",
       f"--responses={tmp_path / 'resp'}", f"--out_dir={tmp_path / 'out'}"],
      capture_output=True, text=True, cwd=Path(__file__).parents[2])
  assert out.returncode == 0, out.stderr
  assert "| older | pixel | 1 | 10 | 8 | 4.00 [" in out.stdout
  assert "Raters: 2, kept 1, dropped 1" in out.stdout
  result = json.loads((tmp_path / "out" / "analysis.json").read_text())
  assert result["edits"][0]["ratio"] == 4.0
  assert "| older | pixel |" in (tmp_path / "out" / "analysis.md").read_text()
  plot = image_io.load_image(tmp_path / "out" / "preference.png")
  assert plot.shape[0] > 200 and plot.min() < 0.5  # something drawn


def test_rater_bootstrap():
  rng = np.random.default_rng(0)
  # One rater: every resample is that rater, so the interval is the point.
  assert analysis.bootstrap_fraction_by_rater([3], [4], rng) == (0.75, 0.75)
  # Raters at 2/2 and 0/2: resamples give 1, 0 (prob. 1/4 each) or 1/2: interval [0, 1].
  assert analysis.bootstrap_fraction_by_rater([2, 0], [2, 2], rng) == (0.0, 1.0)
  with pytest.raises(ValueError):
    analysis.bootstrap_fraction_by_rater([3], [2], rng)


def test_rater_unit_in_analyse(tmp_path):
  study = make_study(tmp_path / "study")
  responses = answer(study, "a", range(10), 5) + answer(study, "b", [], 5)
  by_response = analysis.analyse(study, responses)["edits"][0]
  by_rater = analysis.analyse(study, responses, unit="rater")["edits"][0]
  assert by_response["fraction"] == by_rater["fraction"] == 0.5
  assert by_rater["fraction_ci"] == [0.0, 1.0]  # two raters who disagree completely
  assert 0.0 < by_response["fraction_ci"][0] < 0.5 < by_response["fraction_ci"][1] < 1.0
