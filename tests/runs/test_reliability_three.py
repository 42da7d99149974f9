"""Reliability, round three (issue 26): never write through a link, verify what a resumed run
kept, pin what can change under a run, never lose a rater's answer, one line for every crash.

One section per class of the issue; in process on the tiny config wherever possible.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfi_jax import run_state
from dfi_jax import workdir_lock
from dfi_jax.data import image_io
from dfi_jax.runs import edit as edit_run
from experiments.configs import synthetic

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTE = ["smiling"]


def tiny(**overrides):
  config = synthetic.get_config("tiny")
  config.batch_size = 4
  config.probe = ""  # the probe's fit compiles anew in every run; not what is tested here
  with config.unlocked():
    for key, value in overrides.items():
      config[key] = value
  return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished tiny run: 2 faces × smiling × 2 δ = 4 items."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  edit_run.run(tiny(), workdir, attributes=ATTRIBUTE)
  return workdir


@pytest.fixture
def copy_of(finished, tmp_path):
  shutil.copytree(finished, tmp_path / "run")
  return tmp_path / "run"


def snapshot(folder: Path) -> dict:
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file() and not p.is_symlink()}


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
  with pytest.raises(image_io.LinkError, match="x.png: is a symbolic link"):
    image_io.save_png(link, np.zeros((2, 2, 3), np.float32))
  assert target.read_bytes() == b"the user's image" and link.is_symlink()
  assert not list(link.parent.glob(".*.tmp"))


@pytest.mark.parametrize("folder", ["edits", "baselines", "originals", "state"])
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
  with pytest.raises(image_io.LinkError, match=f"{folder}: is a symbolic link"):
    edit_run.run(tiny(), copy_of, attributes=ATTRIBUTE)
  assert snapshot(elsewhere) == before


def test_every_output_folder_is_made_through_the_link_check():
  """Run-output code makes folders only with `image_io.make_folder` (which refuses links)."""
  found = []
  for path in [*(ROOT / "dfi_jax" / "runs").glob("*.py"), ROOT / "dfi_jax" / "run_state.py",
               *(ROOT / "dfi_jax" / "dfi" / "bank").glob("*.py"),
               *(ROOT / "dfi_jax" / "eval" / "study").glob("*.py")]:
    found += [f"{path.name}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
              if ".mkdir(" in line and "analysis.py" != path.name]
  assert found == []


# --- 6. judge and weights files checked finite; provenance types named -------------------------


def judge_with(tmp_path, name="judge.npz", nan=False, **changes):
  from dfi_jax.eval import judge as judge_lib
  params, provenance = judge_lib.load()
  if nan:
    first = sorted(params)[0]
    params[first] = dict(params[first])
    kernel = np.array(params[first]["kernel"])
    kernel.flat[0] = np.nan
    params[first]["kernel"] = kernel
  provenance = {k: v for k, v in provenance.items() if k != "format"} | changes
  return judge_lib.save(tmp_path / name, params, provenance)


def test_a_judge_or_weights_file_with_nan_is_one_line_naming_it(tmp_path):
  from dfi_jax.eval import judge as judge_lib
  from dfi_jax.nets import pretrained
  from dfi_jax.nets import weights as weights_lib
  path = judge_with(tmp_path, nan=True)
  with pytest.raises(judge_lib.JudgeError, match=r"judge.npz: parameter .*kernel holds NaN"):
    judge_lib.load(path)
  with pytest.raises(run_state.RunError, match="--config.judge=.*judge.npz: parameter"):
    edit_run.check_inputs(tiny(judge=str(path)))
  params, provenance = weights_lib.load_weights(pretrained.RANDOM_WEIGHTS)
  params["conv1_1"]["bias"] = np.full_like(params["conv1_1"]["bias"], np.inf)
  weights_lib.save_weights(tmp_path / "w.npz", params, provenance)
  with pytest.raises(weights_lib.WeightsError, match=r"w.npz: parameter conv1_1/bias holds NaN"):
    weights_lib.load_weights(tmp_path / "w.npz")


@pytest.mark.parametrize("changes", [dict(channels="abc"), dict(channels=[8, "x"]),
                                     dict(attributes=5), dict(input_size="64"),
                                     dict(input_size=None)])
def test_judge_provenance_of_the_wrong_type_names_the_file(tmp_path, changes):
  from dfi_jax.eval import judge as judge_lib
  path = judge_with(tmp_path, **changes)
  with pytest.raises(judge_lib.JudgeError, match=r"judge.npz: "):
    judge_lib.load(path)
