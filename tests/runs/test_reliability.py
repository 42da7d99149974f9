"""Interrupted runs resume, reruns are bit-identical, failures are contained and clear."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiments.configs import synthetic

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--config=experiments/configs/synthetic.py:tiny", "--config.batch_size=4"]


def command(workdir, *extra):
  return [sys.executable, "-m", "experiments.transform", f"--workdir={workdir}", *ARGS, *extra]


def run(workdir, *extra):
  return subprocess.run(command(workdir, *extra), cwd=ROOT, capture_output=True, text=True,
                        timeout=600)


def snapshot(workdir):
  return {p.relative_to(workdir).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
          for p in sorted(workdir.rglob("*.png")) if p.parent.name == "edits"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("reference")
  proc = run(workdir)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return workdir


def test_kill_9_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path, reference):
  workdir = tmp_path / "interrupted"
  proc = subprocess.Popen(command(workdir), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and len(list((workdir / "state").glob("*.npz"))) < 4:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  finished = snapshot(workdir)
  assert 4 <= len(finished) < 24, "the kill should land mid-run"
  again = run(workdir)
  assert again.returncode == 0, again.stderr[-2000:]
  assert "resuming" in again.stdout
  after = snapshot(workdir)
  for name, (data, mtime) in finished.items():
    assert after[name] == (data, mtime), f"{name} was recomputed or rewritten"
  want = snapshot(reference)
  assert sorted(after) == sorted(want) and len(want) == 24
  for name in want:  # same config and seed: bit-identical PNGs
    assert after[name][0] == want[name][0], name
  assert not list(workdir.rglob("*.tmp"))


def test_rerun_with_other_settings_is_refused(reference):
  before = snapshot(reference)
  proc = run(reference, "--config.tv_weight=0.5")
  assert proc.returncode == 1
  assert "holds a run with other settings (settings.tv_weight: 1e-05 -> 0.5)" in proc.stderr
  assert snapshot(reference) == before


def test_non_finite_loss_fails_only_that_item(tmp_path):
  workdir = tmp_path / "nan"
  proc = run(workdir, "--config.deltas=0.4,1e38", "--attributes=smiling,eyeglasses")
  assert proc.returncode == 1
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith("error:") and "4 edit(s) failed" in line and "non-finite" in line
  edits = sorted(p.name for p in (workdir / "edits").iterdir())
  assert len(edits) == 4 and all("__d0.4.png" in e for e in edits)
  record = json.loads((workdir / "metrics.json").read_text())
  assert len(record["failures"]) == 4
  for name in edits:
    assert np.isfinite(np.asarray(Image.open(workdir / "edits" / name), np.float32)).all()


def test_full_disk_mid_run_loses_nothing_written(tmp_path, monkeypatch):
  from dfi_jax.runs import edit as edit_run
  from dfi_jax.data import image_io
  real_replace, calls = os.replace, {"n": 0}

  def replace(src, dst):
    calls["n"] += 1
    if calls["n"] > 6:
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_replace(src, dst)

  monkeypatch.setattr(image_io.os, "replace", replace)
  config = synthetic.get_config("tiny")
  config.batch_size = 4
  with pytest.raises(OSError, match="No space left"):
    edit_run.run(config, tmp_path / "full", attributes=["smiling", "older"])
  written = list((tmp_path / "full").rglob("*.png"))
  assert written, "some outputs were written before the disk filled"
  for p in written:
    Image.open(p).load()  # complete, decodable files
  assert not list((tmp_path / "full").rglob("*.tmp"))
