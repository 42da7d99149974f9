"""Reliability, round two (issue 18): no run destroys work, every failure is one early line.

Classes 3 and 6: outputs never overwrite each other; an empty path never means "here".
"""

import numpy as np
import pytest

from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import highres
from dfi_jax.data import image_io
from dfi_jax.runs import inpaint
from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from dfi_jax.data import sources
from dfi_jax.runs import sweep
from dfi_jax.eval.study import stimuli
from fake_runs import fake_run
from experiments import cli
from experiments.configs import highres as highres_config
from experiments.configs import inpaint as inpaint_config
from tiny_run import tiny

ATTRIBUTE = ["smiling"]


# --- 3. outputs never overwrite each other ---------------------------------------------------


def test_photo_names_are_distinct_and_never_take_a_real_files_name():
  paths = ["a/x.png", "b/x.png", "c/x_2.png", "d/X.jpg", "e/" + "y" * 300 + ".png"]
  names = sources.photo_names(paths)
  assert names == ["x", "x_3", "x_2", "X_4", "y" * sources.MAX_STEM]
  assert len({n.casefold() for n in names}) == len(names)


def test_same_input_twice_is_refused(tmp_path):
  image_io.save_png(tmp_path / "a.png", np.zeros((8, 8, 3)))
  with pytest.raises(run_state.RunError, match="--inputs: .* would write the same file"):
    edit_run.run(tiny(), tmp_path / "w", [str(tmp_path / "a.png"), str(tmp_path / "a.png")])
  assert not (tmp_path / "w").exists()


def test_repeated_attribute_is_refused(tmp_path):
  with pytest.raises(run_state.RunError, match="--attributes: 'smiling' and 'smiling'"):
    edit_run.run(tiny(), tmp_path / "w", attributes=["smiling", "smiling"])
  assert not (tmp_path / "w").exists()


def test_repeated_sweep_value_is_refused(tmp_path):
  with pytest.raises(run_state.RunError, match="--axis: 'k=3' and 'k=3'"):
    sweep.run_sweep(tiny(), tmp_path / "w", ("k", [3, 3]), attributes=ATTRIBUTE)
  assert not (tmp_path / "w").exists()


@pytest.fixture
def study_inputs(tmp_path):
  fake_run(tmp_path / "run", ["face1", "face2"], ["older"], baseline_dir=tmp_path / "pixel")
  return tmp_path


def build(root, **kw):
  return stimuli.build_study([root / "run"], root / "study", baseline_dirs=[root / "pixel"],
                             **kw)


def test_study_stimuli_refuses_to_replace_another_study(study_inputs):
  first = build(study_inputs)
  assert build(study_inputs) == first  # the same study again: allowed, nothing changes
  before = (study_inputs / "study" / "trials.json").read_bytes()
  with pytest.raises(stimuli.StudyError, match=f"holds study {first['study_id']}, not this one"):
    build(study_inputs, seed=1)
  with pytest.raises(stimuli.StudyError, match="holds study"):
    build(study_inputs, min_attention=5)  # same trials, other attention checks
  assert (study_inputs / "study" / "trials.json").read_bytes() == before
  assert build(study_inputs, seed=1, overwrite=True)["study_id"] != first["study_id"]


def test_study_stimuli_refuses_a_folder_holding_something_else(study_inputs):
  (study_inputs / "study").mkdir()
  (study_inputs / "study" / "notes.txt").write_text("mine")
  with pytest.raises(stimuli.StudyError, match="not empty and holds no study"):
    build(study_inputs)
  assert [p.name for p in (study_inputs / "study").iterdir()] == ["notes.txt"]


def test_output_folders_and_files_are_replaced_only_with_overwrite(tmp_path):
  (tmp_path / "analysis").mkdir()
  (tmp_path / "analysis" / "analysis.json").write_text("{}")
  with pytest.raises(ValueError, match="exists and is not empty; pass --overwrite"):
    cli.check_new_folder(tmp_path / "analysis", overwrite=False)
  assert cli.check_new_folder(tmp_path / "analysis", overwrite=True) == tmp_path / "analysis"
  with pytest.raises(ValueError, match="is a directory; expected a file path"):
    cli.check_new_output(tmp_path / "analysis", overwrite=True)


# --- 6. an empty path never means "here" -----------------------------------------------------


def test_empty_output_paths_are_refused(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  for call in (lambda: edit_run.run(tiny(), "", attributes=ATTRIBUTE),
               lambda: inpaint.run(inpaint_config.get_config("tiny"), ""),
               lambda: highres.run(highres_config.get_config("tiny"), ""),
               lambda: sweep.run_sweep(tiny(), "", ("k", [3])),
               lambda: workdir_lock.locked("", "bank_dir").__enter__()):
    with pytest.raises(run_state.RunError, match=r"^--\w+ is empty; expected a path"):
      call()
  with pytest.raises(ValueError, match="--out is empty"):
    cli.check_new_output("", overwrite=True)
  with pytest.raises(ValueError, match="--out_dir is empty"):
    stimuli.build_study(["run"], "")
  assert list(tmp_path.iterdir()) == []
