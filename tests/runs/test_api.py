"""The Python API (dfi_jax/runs/api.py): the same PNG as the command, inputs checked before any
work, Python-worded errors, combined edits, progress and cancelling (tiny weights)."""

import numpy as np
import pytest
from PIL import Image

import dfi_jax
from dfi_jax.base import run_state
from dfi_jax.data import image_io
from dfi_jax.runs import api
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from experiments.configs import synthetic

skimage_data = pytest.importorskip("skimage.data", reason="the test extra installs scikit-image")


def tiny(**overrides):
  config = synthetic.get_config("tiny")
  config.update(overrides)
  return config


def judged(**overrides):
  """The command's rule for own photos: the judge labels the face, Hamming neighbours."""
  return tiny(judge="default", neighbours="attributes", **overrides)


@pytest.fixture(scope="module")
def astronaut():
  return skimage_data.astronaut()


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
  # A cache folder of this module's own: φ rows other tests left in the shared cache would be
  # read with the ones an edit needs, and the count below would not be this module's.
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("DFI_JAX_BANK_CACHE", str(tmp_path_factory.mktemp("dfi_jax_bank_cache")))
    yield api.load_editor(judged(), progress=lambda *a: None)


def test_the_api_gives_the_commands_png(tmp_path, astronaut, editor):
  path = tmp_path / "astronaut.png"
  Image.fromarray(astronaut).save(path)
  edit_run.run(judged(), tmp_path / "run", [str(path)], ["eyeglasses"])
  before = len(editor.phi_rows.kept)
  edited = api.edit(astronaut, "eyeglasses", [0.4, 0.8], editor=editor,
                    progress=lambda *a: None)
  for s, d in enumerate(("d0.4", "d0.8")):
    command = np.asarray(Image.open(tmp_path / "run" / "edits" / f"astronaut__eyeglasses__{d}.png"))
    ours = image_io.to_uint8(edited["eyeglasses"][s]).astype(int)
    assert np.abs(ours - command).max() <= 1, d
    assert np.abs(ours - astronaut).max() > 3  # and it is an edit
  # φ only of the Hamming neighbours (K sources + K targets), not of the whole bank.
  # (the command's run put them in the bank cache: the API read them from there).
  assert 0 < len(editor.phi_rows.kept) - before <= 2 * editor.config.k
  assert editor.phi_rows.computed == 0
  again = len(editor.phi_rows.kept)
  api.edit(astronaut, "eyeglasses", 0.4, editor=editor, progress=lambda *a: None)
  assert len(editor.phi_rows.kept) == again  # kept


def test_the_api_solves_each_edits_luminance_and_colour_as_the_command_does(tmp_path,
                                                                           astronaut):
  """luma_scale 2 with luma_detail 0: every item flagged per pixel; colour_share 1: every item
  luminance only. The API passes the flags (without them every item would be coarse and
  coloured), so it gives the command's PNG; where_pixels leaves own photos alone in both. Both
  edit at photo_size (48², not image_size's 32²)."""
  config = judged(luma_scale=2, luma_detail=0.0, colour_share=1.0, where="features",
                  where_pixels=True, iterations=3, photo_size=48)
  path = tmp_path / "astronaut.png"
  Image.fromarray(astronaut).save(path)
  edit_run.run(config, tmp_path / "run", [str(path)], ["smiling"])
  editor = api.load_editor(config, progress=lambda *a: None)
  assert editor.config.image_size == 48 and config.image_size == 32
  ours = api.edit(astronaut, "smiling", 0.4, editor=editor, progress=lambda *a: None)
  command = np.asarray(Image.open(tmp_path / "run" / "edits" / "astronaut__smiling__d0.4.png"))
  assert np.abs(image_io.to_uint8(ours["smiling"][0]).astype(int) - command).max() <= 1
  config.where_pixels = False
  edit_run.run(config, tmp_path / "no_pixels", [str(path)], ["smiling"])
  np.testing.assert_array_equal(command, np.asarray(Image.open(
      tmp_path / "no_pixels" / "edits" / "astronaut__smiling__d0.4.png")))


def test_a_combined_edit_moves_along_the_sum_of_its_parts(astronaut, editor):
  config, bank = editor.config, editor.bank
  tests = api._tests(editor, api._photo(astronaut), None, False)
  tests = kit.judged_attributes(config, tests, bank)
  edits = kit.select_edits(bank, ["older", "eyeglasses", "older+eyeglasses"])
  masks = kit.edit_masks(bank, edits, config.k)
  directions, found = kit.make_directions(config, bank, editor.features, tests, edits,
                                               masks)
  phi_x = editor.pipeline.phi(editor.network.params, tests.images)
  older, glasses, both = directions(phi_x)
  np.testing.assert_allclose(both, older + glasses, rtol=1e-6)
  assert set(found["neighbourhood"].sets) == {"older", "eyeglasses"}
  out = api.edit(astronaut, ["older+eyeglasses"], 0.4, editor=editor, progress=lambda *a: None)
  assert out["older+eyeglasses"].shape == (1, 512, 512, 3)


def test_a_combined_edit_on_the_command_line(tmp_path, astronaut):
  path = tmp_path / "a.png"
  Image.fromarray(astronaut).save(path)
  edit_run.run(judged(deltas=(0.4,)), tmp_path / "run", [str(path)], ["older+eyeglasses"])
  assert (tmp_path / "run" / "edits" / "a__older+eyeglasses__d0.4.png").exists()
  with pytest.raises(run_state.RunError, match="combined edit needs --inputs"):
    edit_run.run(tiny(), tmp_path / "synthetic", [], ["older+eyeglasses"])
  with pytest.raises(run_state.RunError, match="names an attribute twice"):
    edit_run.run(judged(), tmp_path / "twice", [str(path)], ["older+older"])


@pytest.mark.parametrize("image, message", [
    (np.zeros((8, 8, 3), np.uint16), "dtype uint16; expected uint8, or float"),
    (np.zeros((8, 8, 3), np.int64), "dtype int64"),
    (np.full((8, 8, 3), 200.0, np.float32), r"values in \[200, 200\]; expected \[0, 1\]"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((8, 8), np.uint8), "expected \\[H, W, 3\\]"),
])
def test_bad_images_are_refused_before_any_work(monkeypatch, image, message):
  monkeypatch.setattr(api, "load_editor", lambda *a, **k: pytest.fail("loaded the editor"))
  with pytest.raises(ValueError, match=message):
    dfi_jax.edit(image, "smiling")


@pytest.mark.parametrize("attributes, deltas, message", [
    ([], 3.0, "attributes is empty"),
    ("smilling", 3.0, r"unknown \['smilling'\]"),
    ("smiling", float("nan"), "expected finite numbers"),
    ("smiling", "3", "expected a number"),
    ("smiling", [], "deltas is empty"),
    (["smiling", "smiling"], 3.0, "given once"),
])
def test_bad_attributes_and_deltas_are_refused_before_any_work(monkeypatch, attributes, deltas,
                                                               message):
  monkeypatch.setattr(api, "load_editor", lambda *a, **k: pytest.fail("loaded the editor"))
  with pytest.raises(ValueError, match=message):
    dfi_jax.edit(np.zeros((8, 8, 3), np.uint8), attributes, deltas)


def test_one_name_and_one_delta_need_no_lists():
  assert api._attributes("smiling") == ["smiling"]  # not its letters
  assert api._deltas(3, (1.0,)) == [3.0]
  assert api._deltas(np.float32(2.5), (1.0,)) == [2.5]
  assert api._deltas(None, (1.0, 2.0)) == [1.0, 2.0]


def test_images_are_read_as_the_command_reads_files(tmp_path, astronaut):
  rgba = np.concatenate([astronaut, np.linspace(0, 255, 512).astype(np.uint8)[None, :, None]
                         .repeat(512, 0)], axis=-1)
  Image.fromarray(rgba).save(tmp_path / "rgba.png")
  np.testing.assert_allclose(api._photo(rgba), image_io.load_image(tmp_path / "rgba.png"),
                             atol=1e-6)
  np.testing.assert_allclose(api._photo(Image.fromarray(rgba)), api._photo(rgba))
  np.testing.assert_allclose(api._photo(astronaut / 255.0), api._photo(astronaut), atol=1e-6)


def test_configs_and_errors_speak_python():
  with pytest.raises(ValueError, match=r"load_editor\(config=…\): got a dict"):
    api.load_editor({"k": 3})
  with pytest.raises(run_state.RunError) as e:
    api.load_editor(tiny(k=0))
  assert "config.k=0" in str(e.value) and "--" not in str(e.value)


def test_no_face_is_a_python_message_and_whole_image_edits_it(editor):
  coffee = skimage_data.coffee()[::4, ::4]
  with pytest.raises(run_state.RunError, match="whole_image=True") as e:
    api.edit(coffee, "smiling", 0.4, editor=editor, progress=lambda *a: None)
  assert "--" not in str(e.value)
  out = api.edit(coffee, "smiling", 0.4, editor=editor, whole_image=True,
                 progress=lambda *a: None)
  assert out["smiling"].shape == (1,) + coffee.shape


def test_find_faces_and_one_chosen_face(astronaut, editor):
  found = api.find_faces(astronaut, editor)
  assert len(found) == 1
  left, top, right, bottom = found[0].box
  assert 150 < left < right < 290 and 50 < top < bottom < 190
  with pytest.raises(ValueError, match="face=1: find_faces found 1 face"):
    api.edit(astronaut, "smiling", 0.4, editor=editor, face=1, progress=lambda *a: None)


def test_loading_reports_its_progress():
  seen = []
  api.load_editor(judged(), progress=lambda *a: seen.append(a))
  assert seen[0] == ("loading", 0, 4) and seen[-1] == ("loading", 4, 4)


def test_progress_reports_each_stage_and_raising_in_it_cancels(astronaut, editor):
  seen = []
  api.edit(astronaut, "smiling", 0.4, editor=editor, progress=lambda *a: seen.append(a))
  stages = [s for s, _, _ in seen]
  assert "faces" in stages and "reverse map" in stages
  assert seen[-1][1] == seen[-1][2]  # the reverse map reached its total

  class Stop(Exception):
    pass

  def stop(stage, done, total):
    if stage == "reverse map":
      raise Stop
  with pytest.raises(Stop):
    api.edit(astronaut, "mouth_open", 0.4, editor=editor, progress=stop)


def test_the_api_is_listed_and_exported():
  listed = dir(dfi_jax)
  for name in ("edit", "load_editor", "find_faces", "default_config", "RunError"):
    assert name in listed
  assert dfi_jax.RunError is run_state.RunError
  for fn in (dfi_jax.edit, dfi_jax.load_editor):
    assert "Returns:" in fn.__doc__ and "Time and memory" in fn.__doc__
