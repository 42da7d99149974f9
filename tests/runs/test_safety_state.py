"""Reliability, round two (issue 18): no run destroys work, every failure is one early line.

Class 7: state knows which settings made it, and a full disk while state is written.
"""

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfi_jax.runs import edit as edit_run
from dfi_jax.base import files as files_lib
from dfi_jax.base import run_state
from tiny_run import tiny

ATTRIBUTE = ["smiling"]


# --- 7. state knows which settings made it ----------------------------------------------------


def test_state_is_reused_only_under_the_settings_that_made_it(copy_of, calls):
  (copy_of / "run.json").unlink()
  edit_run.run(tiny(), copy_of, attributes=ATTRIBUTE)
  assert calls == []  # same settings, run.json gone: every item reused
  (copy_of / "run.json").unlink()
  record = edit_run.run(tiny(k=4), copy_of, attributes=ATTRIBUTE)
  assert calls == [2, 2]  # other settings: nothing reused
  assert record["settings"]["k"] == 4
  claimed = json.loads((copy_of / "run.json").read_text())
  assert claimed["settings"]["k"] == 4
  fingerprint = run_state.claim(copy_of, claimed).fingerprint
  for item in (copy_of / "state").glob("*.npz"):
    with np.load(item) as npz:
      assert str(npz["fingerprint"]) == fingerprint


def test_edit_pngs_follow_their_state(copy_of, calls):
  """An edit PNG left by other settings (no state for it) is replaced, not kept."""
  state = sorted((copy_of / "state").glob("*.npz"))[0]
  png = copy_of / "edits" / (state.stem + ".png")
  state.unlink()
  png.write_bytes(b"stale")
  edit_run.run(tiny(), copy_of, attributes=ATTRIBUTE)
  assert calls == [2] and Image.open(png).size == (32, 32)


# --- disk full while state is written ---------------------------------------------------------


def test_disk_full_during_state_writes_then_rerun_completes(tmp_path, monkeypatch, calls):
  real, writes = files_lib.atomic_write_bytes, []

  def full_at_the_second_state_item(path, data):
    if Path(path).parent.name == run_state.STATE_DIR:
      writes.append(path)
      if len(writes) == 2:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(path, data)

  monkeypatch.setattr(run_state.files_lib, "atomic_write_bytes", full_at_the_second_state_item)
  with pytest.raises(OSError, match="No space left"):
    edit_run.run(tiny(), tmp_path / "w", attributes=ATTRIBUTE)
  assert len(list((tmp_path / "w" / "state").glob("*.npz"))) == 1
  assert (tmp_path / "w" / "run.json").exists() and not list((tmp_path / "w").rglob("*.tmp"))
  monkeypatch.setattr(run_state.files_lib, "atomic_write_bytes", real)
  record = edit_run.run(tiny(), tmp_path / "w", attributes=ATTRIBUTE)
  assert calls == [2, 2, 2] and len(record["outputs"]["edits"]) == 4
