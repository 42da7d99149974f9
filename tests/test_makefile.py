"""The Makefile: user-given values (PHOTO, ATTRS, DELTAS) reach the command as whole arguments
and never as shell text."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_demo_photo_passes_hostile_values_as_plain_arguments(tmp_path):
  fake = tmp_path / "fakepy"  # records its arguments, one per line, instead of running
  fake.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {tmp_path}/args\n')
  fake.chmod(0o755)
  for stamp in ("s1", "s2"):
    (tmp_path / stamp).touch()
  photo = (f"{tmp_path}/my photo;touch {tmp_path}/p1;`touch {tmp_path}/p2`"
           f"$(touch {tmp_path}/p3)$(shell touch {tmp_path}/p4).png")
  attrs = f"older+eyeglasses;touch {tmp_path}/p5"
  subprocess.run(["make", "-s", "-C", str(ROOT), "demo-photo", f"PY={fake}",
                  f"STAMP={tmp_path}/s1", f"PHOTOS_STAMP={tmp_path}/s2", f"PHOTO={photo}",
                  f"ATTRS={attrs}", "DELTAS=1,3"], check=True, capture_output=True,
                 env=dict(os.environ, MAKEFLAGS=""), timeout=60)
  assert not list(tmp_path.glob("p*"))  # nothing ran
  args = (tmp_path / "args").read_text().splitlines()
  assert args[:2] == ["-m", "experiments.transform"]
  assert f"--inputs={photo}" in args and f"--attributes={attrs}" in args
  assert "--config.deltas=1,3" in args and "--config.animate=gif" in args
