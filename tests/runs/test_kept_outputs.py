"""Reliability, round three (issue 26): never write through a link, verify what a resumed run
kept, pin what can change under a run, never lose a rater's answer, one line for every crash.

Classes 1 and 3: never write through a link the run did not make; a resumed run verifies every
final output it kept. In process on the tiny config.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.runs import edit as edit_run
from tiny_run import fresh_copy, tiny

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTE = ["smiling"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished tiny run: 2 faces × smiling × 2 δ = 4 items, with animations."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  edit_run.run(tiny(animate="gif"), workdir, attributes=ATTRIBUTE)
  return workdir


@pytest.fixture
def copy_of(finished, tmp_path):
  return fresh_copy(finished, tmp_path, "run")


def snapshot(folder: Path) -> dict:
  """Every file's bytes but `metrics.json` (its timings differ from run to run)."""
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file() and not p.is_symlink() and p.name != "metrics.json"}


# --- 1. never write through a link the run did not make ----------------------------------------


@pytest.mark.parametrize("dangling", [False, True])
def test_a_lock_file_that_is_a_link_is_refused_and_never_written_through(tmp_path, dangling):
  workdir, target = tmp_path / "w", tmp_path / "precious.txt"
  workdir.mkdir()
  if not dangling:
    target.write_text("the user's file\n")
  (workdir / workdir_lock.LOCK).symlink_to(target)
  with pytest.raises(run_state.RunError, match="lock file .* is a symbolic link"):
    with workdir_lock.locked(workdir):
      pass
  if dangling:
    assert not target.exists()  # O_CREAT through the link would have made it
  else:
    assert target.read_text() == "the user's file\n"


def test_atomic_writes_never_write_through_a_link(tmp_path):
  target = tmp_path / "elsewhere.png"
  target.write_bytes(b"the user's image")
  link = tmp_path / "out" / "x.png"
  link.parent.mkdir()
  link.symlink_to(target)
  with pytest.raises(files_lib.LinkError, match="x.png: is a symbolic link"):
    image_io.save_png(link, np.zeros((2, 2, 3), np.float32))
  assert target.read_bytes() == b"the user's image" and link.is_symlink()
  assert not list(link.parent.glob(".*.tmp"))


@pytest.mark.parametrize("folder", ["edits", "baselines", "originals", "state", "animations"])
def test_output_folders_that_are_links_are_refused(copy_of, tmp_path, folder):
  """A folder of the workdir replaced by a link to the user's folder: the rerun refuses it in
  one line and leaves every file there as it was (one item's state removed, so the rerun has
  something to write everywhere)."""
  elsewhere = tmp_path / "users_folder"
  shutil.move(copy_of / folder, elsewhere)
  (copy_of / folder).symlink_to(elsewhere, target_is_directory=True)
  if folder == "state":
    (sorted(elsewhere.glob("*.npz"))[0]).unlink()
  else:
    (sorted((copy_of / "state").glob("*.npz"))[0]).unlink()
  before = snapshot(elsewhere)
  with pytest.raises(files_lib.LinkError, match=f"{folder}: is a symbolic link"):
    edit_run.run(tiny(animate="gif"), copy_of, attributes=ATTRIBUTE)
  assert snapshot(elsewhere) == before


def test_prepare_data_s_shoes_never_write_through_a_link(tmp_path):
  from dfi_jax.data import shoes
  target = tmp_path / "notes.txt"
  target.write_text("mine")
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / shoes.MARKER).symlink_to(target)
  with pytest.raises(files_lib.LinkError):
    shoes.write_folder(tmp_path / "out", 2)
  assert target.read_text() == "mine"


def test_every_output_folder_is_made_through_the_link_check():
  """Run-output code makes folders only with `files_lib.make_folder` (which refuses links)."""
  found = []
  for path in [*(ROOT / "dfi_jax" / "runs").glob("*.py"),
               ROOT / "dfi_jax" / "base" / "run_state.py",
               *(ROOT / "dfi_jax" / "outputs").glob("*.py"),
               *(ROOT / "dfi_jax" / "dfi" / "bank").glob("*.py"),
               *(ROOT / "dfi_jax" / "eval" / "study").glob("*.py")]:
    found += [f"{path.name}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
              if ".mkdir(" in line and "analysis.py" != path.name]
  assert found == []


# --- 3. a resumed run verifies every final output it kept -------------------------------------


def test_a_resumed_edit_run_rewrites_missing_or_damaged_outputs_from_state(
    finished, copy_of, calls, capsys):
  edits = sorted((copy_of / "edits").glob("*.png"))
  edits[0].write_bytes(edits[0].read_bytes()[:100])  # truncated
  edits[1].unlink()
  Image.new("RGB", (32, 32), "white").save(edits[2])  # decodes, but is not what state says
  for kind in ("baselines", "originals"):
    sorted((copy_of / kind).glob("*.png"))[0].unlink()
  (copy_of / "grid.png").write_bytes(b"")
  animation = sorted((copy_of / "animations").glob("*.gif"))[0]
  animation.write_bytes(animation.read_bytes()[:30])
  edit_run.run(tiny(animate="gif"), copy_of, attributes=ATTRIBUTE)
  assert calls == []  # nothing recomputed: every output rewritten from what was kept
  assert snapshot(copy_of) == snapshot(finished)
  err = capsys.readouterr().err
  assert f"{edits[0]} was damaged or changed" in err and f"{edits[1]} was missing" in err
  assert f"{edits[2]} was damaged or changed" in err


def test_a_resumed_inpainting_run_rewrites_a_damaged_output(tmp_path, calls):
  from dfi_jax.runs import inpaint
  from experiments.configs import inpaint as inpaint_config
  inpaint.run(inpaint_config.get_config("tiny"), tmp_path / "w")
  before = snapshot(tmp_path / "w")
  png = sorted((tmp_path / "w" / "inpainted").glob("*.png"))
  png[0].write_bytes(png[0].read_bytes()[:50])
  png[1].unlink()
  calls.clear()
  inpaint.run(inpaint_config.get_config("tiny"), tmp_path / "w")
  assert calls == [] and snapshot(tmp_path / "w") == before
