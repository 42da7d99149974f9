"""The whole `experiments.transform` on the tiny config, as a user runs it; the command's
contract for each kind of failure (one line, exit 1, no traceback), with the checks behind it
in process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfi_jax.runs import edit as edit_run
from experiments import cli
from experiments.configs import synthetic

ROOT = Path(__file__).resolve().parents[2]
TINY = "experiments/configs/synthetic.py:tiny"


def transform(workdir, *args):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, "-m", "experiments.transform", f"--workdir={workdir}",
                         f"--config={TINY}", *args], cwd=ROOT, capture_output=True, text=True,
                        env=env, timeout=600)


def tiny(**overrides):
  config = synthetic.get_config("tiny")
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("tiny")
  proc = transform(workdir)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return workdir, proc


def test_tiny_run_writes_complete_outputs(tiny_run):
  workdir, proc = tiny_run
  assert "reverse map" in proc.stderr  # the progress bar
  assert f"wrote {workdir}/grid.png, index.html, metrics.json (24 edits) in " in proc.stdout
  record = json.loads((workdir / "metrics.json").read_text())
  for key in ("settings", "weights", "summary", "per_image", "timings", "versions", "outputs"):
    assert key in record
  prov = record["weights"]["provenance"]
  assert prov["kind"] in ("random", "trained") and prov["description"]
  assert record["versions"]["jax"] and record["versions"]["jaxopt"]
  settings = record["settings"]
  assert settings["k"] == 5 and settings["deltas"] == [0.4, 0.8]
  # 2 faces x 6 attributes x 2 deltas, each with the counterfactual metrics and the baseline.
  assert len(record["per_image"]) == 24 and len(record["outputs"]["edits"]) == 24
  for row in record["per_image"]:
    assert np.isfinite(row["r"]) and np.isfinite(row["outside"]) and np.isfinite(row["baseline_r"])
    assert isinstance(row["probe_success"], bool) and 0 <= row["probe_preservation"] <= 1
  assert len(record["probe"]["accuracy_on_held_out"]) == 6
  assert len(record["outputs"]["baselines"]["pixel"]) == 12
  for rel in record["outputs"]["baselines"]["pixel"] + record["outputs"]["originals"]:
    assert (workdir / rel).exists()
  assert set(record["summary"]["d0.4"]) == {"older", "mouth_open", "eyes_open", "smiling",
                                            "moustache", "eyeglasses"}
  for rel in record["outputs"]["edits"]:
    pixels = np.asarray(Image.open(workdir / rel))
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
  grid = Image.open(workdir / "grid.png")
  assert grid.width > 32 * 19 and grid.height > 32 * 2  # 1 + 12 edits + 6 counterfactuals
  html = (workdir / "index.html").read_text()
  assert "grid.png" in html and "eyeglasses" in html and "edits/" in html
  assert not [p for p in workdir.rglob("*") if ".tmp" in p.name]


def test_own_photos_keep_their_size(tmp_path):
  rgba = np.zeros((50, 80, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 200, 128
  Image.fromarray(rgba, "RGBA").save(tmp_path / "wide photo.png")
  grey = (np.arange(45 * 30).reshape(45, 30) % 256).astype(np.uint8)
  Image.fromarray(grey, "L").save(tmp_path / "grey.jpg")
  out = tmp_path / "out"
  edit_run.run(tiny(deltas=(0.4,), align="none"), out,  # no faces in these: fitted whole
               [str(tmp_path / "wide photo.png"), str(tmp_path / "grey.jpg")],
               ["eyeglasses", "smiling"])
  record = json.loads((out / "metrics.json").read_text())
  assert record["data"] == "photos" and record["images"] == ["wide photo", "grey"]
  edits = sorted(record["outputs"]["edits"])
  assert len(edits) == 4
  sizes = {Path(e).name.split("__")[0]: Image.open(out / e).size for e in edits}
  assert sizes == {"wide photo": (80, 50), "grey": (30, 45)}


# The CLI's contract (one line, exit 1, no traceback) for each kind of failure: flags, run-time
# checks, files. Values that `validate` rejects are checked in process, with their messages, by
# test_safety_checked_first.test_bad_setting_fails_before_anything_is_written and test_fuzz_config.
@pytest.mark.parametrize("args, message", [
    (["--config.k=500"], "K=500 but edit"),
    (["--config.weights=/nonexistent/w.npz"], "/nonexistent/w.npz not found"),
    (["--config.nosuchfield=1"], "--config.nosuchfield: no such config field"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
  proc = transform(tmp_path / "out", *args)
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and message in lines[0], proc.stderr[-1500:]
  assert "Traceback" not in proc.stderr


# More bad inputs, in process: the run raises one of the errors the command turns into its one
# line (cli.USER_ERRORS, as above) before it writes anything.
@pytest.mark.parametrize("inputs, attributes, overrides, message", [
    ([], ["glasses"], {}, "valid attributes are ['older'"),
    (["/nonexistent/a.png"], [], {}, "/nonexistent/a.png"),
    ([], [], dict(weights=__file__), "is not a readable dfi_jax weights file"),
])
def test_bad_input_fails_with_a_user_error(tmp_path, inputs, attributes, overrides, message):
  with pytest.raises(cli.USER_ERRORS) as e:
    edit_run.run(tiny(**overrides), tmp_path / "out", inputs, attributes)
  assert message in str(e.value)
  assert not (tmp_path / "out").exists()


def test_bad_override_of_the_default_config_is_one_clear_line(tmp_path):
  """Without --config=, ml_collections applies overrides while the flag is defined (at import)."""
  proc = subprocess.run([sys.executable, "-m", "experiments.transform",
                         f"--workdir={tmp_path / 'out'}", "--config.nosuchfield=1"], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 1
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and "no such config field" in lines[0], proc.stderr[-1500:]
  assert "nosuchfield" in lines[0] and not (tmp_path / "out").exists()


def test_a_photo_without_a_face_is_one_clear_line(tmp_path):
  Image.fromarray(np.full((60, 90, 3), 128, np.uint8)).save(tmp_path / "wall.png")
  with pytest.raises(cli.USER_ERRORS) as e:
    edit_run.run(tiny(), tmp_path / "out", [str(tmp_path / "wall.png")])
  assert str(e.value).startswith(f"--inputs={tmp_path / 'wall.png'}: no face found")
  assert not (tmp_path / "out").exists()


def test_unwritable_workdir_is_one_clear_line(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  proc = transform(blocker / "out")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("error: RunError: --workdir=")
  assert "cannot create it" in proc.stderr
