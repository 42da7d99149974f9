"""Interrupted runs resume, reruns are bit-identical, failures are contained and clear.

Only the kill -9 needs a process of its own; the reference run, the rerun after the kill and
the other runs here are in process (tiny config, batch 4: one compiled solver for all of them).
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfi_jax.base import run_state
from dfi_jax.data import image_io
from dfi_jax.runs import edit as edit_run
from experiments import cli
from experiments.configs import synthetic

ROOT = Path(__file__).resolve().parents[2]


def tiny(**overrides):
  """The tiny config at batch 4: each δ of its 12 items in 3 batches (a kill can land between)."""
  config = synthetic.get_config("tiny")
  config.batch_size, config.probe = 4, ""  # the probe does not touch the edits
  config.update(overrides)
  return config


def snapshot(workdir):
  return {p.relative_to(workdir).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
          for p in sorted(workdir.rglob("*.png")) if p.parent.name == "edits"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run of `tiny()`: 2 faces x 6 attributes x 2 δ = 24 edits."""
  workdir = tmp_path_factory.mktemp("reference")
  edit_run.run(tiny(), workdir)
  return workdir


def kill_after(proc, workdir, items):
  """kill -9 `proc` once `items` finished items are in `workdir`'s state (or after 300 s)."""
  deadline = time.time() + 300
  while (time.time() < deadline and proc.poll() is None
         and len(list((workdir / "state").glob("*.npz"))) < items):
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()


def test_kill_9_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path, request, capsys):
  workdir = tmp_path / "interrupted"
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.transform", f"--workdir={workdir}",
       "--config=experiments/configs/synthetic.py:tiny", "--config.batch_size=4",
       "--config.probe="], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  killer = threading.Thread(target=kill_after, args=(proc, workdir, 4))
  killer.start()
  try:
    reference = request.getfixturevalue("reference")  # in process, while the CLI starts up
    killer.join()
  finally:
    proc.kill()
    killer.join()
  finished = snapshot(workdir)
  assert 4 <= len(finished) < 24, "the kill should land mid-run"
  capsys.readouterr()
  edit_run.run(tiny(), workdir)  # the same settings as the command: it resumes
  assert "resuming" in capsys.readouterr().out
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
  with pytest.raises(run_state.RunError, match=re.escape(
      "holds a run with other settings (settings.tv_weight: 1e-05 -> 0.5)")):
    edit_run.run(tiny(tv_weight=0.5), reference)
  assert snapshot(reference) == before


def test_non_finite_loss_fails_only_that_item(tmp_path):
  """With the probe on: it scores the finished items only. The command's last line names the
  failures (`transform.report`) and, a ValueError, exits 1 (`cli.run_main`)."""
  from experiments import transform  # pylint: disable=import-outside-toplevel  # defines flags
  workdir = tmp_path / "nan"
  record = edit_run.run(tiny(deltas=(0.4, 1e38), probe="pixels"), workdir,
                        attributes=["smiling", "eyeglasses"])
  with pytest.raises(ValueError) as e:
    transform.report(record, workdir)
  assert str(e.value).startswith("4 edit(s) failed: ") and "non-finite" in str(e.value)
  assert ValueError in cli.USER_ERRORS
  edits = sorted(p.name for p in (workdir / "edits").iterdir())
  assert len(edits) == 4 and all("__d0.4.png" in e for e in edits)
  assert len(json.loads((workdir / "metrics.json").read_text())["failures"]) == 4
  assert len(record["per_image"]) == 4  # the finished items, each scored by the probe
  assert all(isinstance(row["probe_success"], bool) for row in record["per_image"])
  for name in edits:
    assert np.isfinite(np.asarray(Image.open(workdir / "edits" / name), np.float32)).all()


def test_full_disk_mid_run_loses_nothing_written(tmp_path, monkeypatch):
  real_replace, calls = os.replace, {"n": 0}

  def replace(src, dst):
    calls["n"] += 1
    if calls["n"] > 6:
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_replace(src, dst)

  monkeypatch.setattr(image_io.os, "replace", replace)
  with pytest.raises(OSError, match="No space left"):
    edit_run.run(tiny(), tmp_path / "full", attributes=["smiling", "older"])
  written = list((tmp_path / "full").rglob("*.png"))
  assert written, "some outputs were written before the disk filled"
  for p in written:
    Image.open(p).load()  # complete, decodable files
  assert not list((tmp_path / "full").rglob("*.tmp"))
