"""Reliability, round three (issue 26): never write through a link, verify what a resumed run
kept, pin what can change under a run, never lose a rater's answer, one line for every crash.

Class 5: a study never loses a rater's answer nor shows a broken image.
"""

import json

import pytest
from PIL import Image

from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io


# --- 5. a study never loses a rater's answer nor shows a broken image --------------------------


def make_study(root):
  from dfi_jax.eval.study import analysis
  trials = [dict(id=f"m{i:05d}", kind="main", attribute="older", delta=1.0, baseline="pixel",
                 dfi_side="left", correct_side=None, left=f"images/l{i}.png",
                 right=f"images/r{i}.png") for i in range(12)]
  trials += [dict(id=f"a000_{i:04d}", kind="attention", attribute="older", delta=None,
                  baseline=None, dfi_side=None, correct_side="right", left=f"images/al{i}.png",
                  right=f"images/ar{i}.png") for i in range(3)]
  root.mkdir(parents=True, exist_ok=True)
  files_lib.atomic_write_json(root / "trials.json", dict(study_id="s1", trials=trials))
  return analysis.load_study([root])


def answers(study, rater, file, dfi_count, rt_ms):
  return [dict(study_id="s1", rater=rater, trial_id=t["id"],
               choice="right" if t["kind"] == "attention" or int(t["id"][1:]) >= dfi_count
               else "left", left=t["left"], right=t["right"], rt_ms=rt_ms, file=file)
          for t in study.trials.values()]


def test_two_raters_with_the_same_id_are_kept_apart_loudly(tmp_path, capsys):
  from dfi_jax.eval.study import analysis
  study = make_study(tmp_path / "study")
  first = answers(study, "alice", "a.csv", 4, 500.0)  # DFI 4 : 8
  second = answers(study, "alice", "b.csv", 8, 700.0)  # another person, same ID: 8 : 4
  result = analysis.analyse(study, first + second)
  assert result["raters"]["total"] == 2 and result["edits"][0]["n"] == 24
  assert result["edits"][0]["dfi"] == 12
  assert {r["rater"] for r in result["raters"]["per_rater"]} == {"alice", "alice#2"}
  assert "b.csv: rater 'alice' answered differently" in capsys.readouterr().err
  # The same export twice (its CSV and its JSON) stays one rater, counted once.
  again = [dict(r, file="a.json") for r in first]
  result = analysis.analyse(study, first + again)
  assert result["raters"]["total"] == 1 and result["edits"][0]["n"] == 12
  assert result["responses"]["duplicates"] == 15


@pytest.mark.parametrize("response, word", [
    ([1, 2], "response 1 is a JSON list"), (dict(trial_id=["m00000"]), "trial_id"),
    (dict(rt_ms=[1]), "rt_ms"), (dict(rater={"a": 1}), "rater"), (dict(choice=7), "choice")])
def test_study_answers_of_the_wrong_json_type_name_the_file(tmp_path, response, word):
  from dfi_jax.eval.study import analysis
  good = dict(trial_id="m00000", choice="left", rt_ms=500)
  row = response if isinstance(response, list) else dict(good, **response)
  path = tmp_path / "answers.json"
  path.write_text(json.dumps(dict(study_id="s1", rater="r", responses=[row])))
  with pytest.raises(analysis.AnalysisError, match=f"answers.json: .*{word}"):
    analysis.read_responses(path)


def test_study_stimuli_decodes_every_stimulus_before_copying(tmp_path):
  from dfi_jax.eval.study import stimuli
  from fake_runs import fake_run
  fake_run(tmp_path / "run", ["face1", "face2"], ["older"], baseline_dir=tmp_path / "pixel")
  edit = sorted((tmp_path / "run" / "edits").glob("*.png"))[0]
  edit.write_bytes(edit.read_bytes()[:60])  # truncated
  with pytest.raises(stimuli.StudyError, match=f"{edit.name}: truncated or corrupt image"):
    stimuli.build_study([tmp_path / "run"], tmp_path / "study",
                        baseline_dirs=[tmp_path / "pixel"])
  assert not (tmp_path / "study" / "images").exists()


def test_an_animation_says_only_its_first_frame_is_read(tmp_path, capsys):
  frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
  frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
  image = image_io.load_image(tmp_path / "a.gif")
  assert image[0, 0, 0] > 0.9  # the first (red) frame
  assert "a.gif: 2 frames (an animation or a multi-page file); only the first is read" in \
      capsys.readouterr().err
