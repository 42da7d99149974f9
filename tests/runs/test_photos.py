"""Own photos (dfi_jax/runs/photos.py, landmarks.py): the real detector on generated faces with known
landmarks, the geometry against known answers, and a real bundled photo end to end (tiny weights).

The real photo is scikit-image's `astronaut.png` (512², in the wheel; the test extra installs it):
one face at about (175..265, 76..166). Two astronauts side by side make a two-face photo.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfi_jax.dfi import align
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from dfi_jax.data import faces
from dfi_jax.data import landmarks
from dfi_jax.eval import photo_zones
from dfi_jax.runs import photo_outputs
from dfi_jax.runs import photos
from dfi_jax.base import run_state
from experiments.configs import synthetic
from image_points import dots, peak

skimage_data = pytest.importorskip("skimage.data", reason="the test extra installs scikit-image")
BANK = 64  # errors are measured in the pixels of the demo bank's 64² frame
ASTRONAUT_FACE = (175, 76, 265, 166)  # dlib's box on astronaut.png: left, top, right, bottom


@pytest.fixture(scope="module")
def detector():
  return landmarks.load_detector()


@pytest.fixture(scope="module")
def astronaut():
  return skimage_data.astronaut().astype(np.float32) / 255.0


def tiny(**overrides):
  config = synthetic.get_config("tiny")
  config.update(overrides)
  return config


def test_detector_finds_generated_faces_near_their_known_landmarks(detector):
  size, count, found, errors = 128, 16, 0, []
  for seed in range(10_000_000, 10_000_000 + count):
    face = faces.render(faces.sample_face(seed), size)
    detected = landmarks.detect(detector, face.image, threshold=0.0)
    if not detected:
      continue
    found += 1
    points = landmarks.frame_points(detected[0].points)
    errors.append(np.linalg.norm(points - face.landmarks, axis=1) * BANK / size)
  errors = np.array(errors)
  by_name = dict(zip(faces.LANDMARKS, errors.mean(0)))  # NaN: no counterpart
  print(f"detected {found}/{count}; mean error at {BANK}²: " +
        ", ".join(f"{n} {e:.2f}" for n, e in by_name.items() if np.isfinite(e)))
  assert found >= 12  # measured 177/200 at 128² (docs/photos.md): cartoons are sometimes missed
  for name in photos.ALIGN_LANDMARKS:  # the points the alignment uses: within ~1.5 px at 64²
    assert by_name[name] < 2.0, (name, by_name[name])
  assert by_name["left_eye"] < 1.2 and by_name["right_eye"] < 1.2
  assert np.isnan(by_name["forehead"])  # no counterpart among the 68 points


def test_the_threshold_rejects_the_badge_and_keeps_the_face(detector, astronaut):
  kept = landmarks.detect(detector, astronaut)
  assert len(kept) == 1
  np.testing.assert_allclose(kept[0].box, ASTRONAUT_FACE, atol=8)
  assert len(landmarks.detect(detector, astronaut, threshold=0.0)) == 2  # + the round badge


def test_a_large_photo_is_searched_shrunk_and_landmarked_at_full_size(detector, astronaut):
  big = np.asarray(Image.fromarray((astronaut * 255).astype(np.uint8)).resize((1536, 1536)))
  small, = landmarks.detect(detector, astronaut)
  large, = landmarks.detect(detector, big, max_side=512)
  np.testing.assert_allclose((large.points + 0.5) / 3 - 0.5, small.points, atol=2.0)


def test_warp_and_its_inverse_round_trip_exactly():
  rng = np.random.default_rng(0)
  image = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
  # A quarter turn about (19.5, 19.5) plus a whole-pixel shift puts every pixel centre on one.
  turn = np.array([[0.0, -1.0, 39.0 + 3.0], [1.0, 0.0, 0.0 - 2.0]])
  there = align.warp(image, align.pixel_matrix(turn), 48)
  back = align.warp(there, align.pixel_matrix(align.invert(turn)), 40)
  np.testing.assert_array_equal(there[-2 + 5, 39 + 3 - 5], image[5, 5])  # (x, y) = (5, 5)
  np.testing.assert_array_equal(back[2:-2, 2:-2], image[2:-2, 2:-2])
  points = rng.uniform(0, 40, (7, 2))
  np.testing.assert_allclose(align.apply(align.invert(turn), align.apply(turn, points)), points)


@pytest.mark.parametrize("photo_size", [256, 60])  # the crop shrinks 4× (Lanczos first), or not
def test_the_crop_puts_each_landmark_where_the_similarity_says(photo_size):
  face = faces.render(faces.sample_face(7), photo_size)
  frame = photos.synthetic_frame(tiny(image_size=BANK, bank_size=50))
  target = frame.points[[faces.LANDMARKS.index(n) for n in photos.ALIGN_LANDMARKS]]
  known = face.landmarks[[faces.LANDMARKS.index(n) for n in photos.ALIGN_LANDMARKS]]
  matrix, _ = align.similarity_fit(known.astype(np.float64), target)
  pts = np.round(known).astype(np.float64)  # dots on pixel centres
  cropped = photos.crop(dots(pts, (photo_size, photo_size), radius=1), matrix, BANK)
  for x, y in align.apply(matrix, pts):
    px, py = peak(cropped, x, y, r=2)
    assert np.hypot(px - x, py - y) < 0.35, (x, y, px, py)


def _alignment(matrix, points):
  return photos.FaceAlignment(0, "p", 1, 1, matrix, points, 1.0, np.zeros((5, 2)), 0.0)


def test_paste_changes_only_inside_the_mask_and_puts_the_change_on_the_face(detector, astronaut):
  face, = landmarks.detect(detector, astronaut)
  frame = photos.synthetic_frame(tiny(image_size=BANK, bank_size=50))
  matrix, residual = photos.fit_face(face.points, frame)
  assert residual < 3.0
  aligned = _alignment(matrix, face.points)
  square = photos.crop(astronaut, matrix, BANK)
  eye = frame.points[faces.LANDMARKS.index("left_eye")]
  # The whole crop 0.1 darker, and a bright dot on its left eye.
  edit = square - 0.1 + 0.3 * dots(eye[None], (BANK, BANK), radius=1)
  out = photos.paste(astronaut, [square], [edit], [aligned])
  mask = photos.face_mask(aligned, astronaut.shape[:2], BANK)
  assert out.shape == astronaut.shape and out.dtype == np.float32
  np.testing.assert_array_equal(out[mask == 0], astronaut[mask == 0])  # exactly, bit for bit
  assert (mask > 0).mean() < 0.15  # the face, not the photo
  rows, cols = np.nonzero(mask)
  left, top, right, bottom = ASTRONAUT_FACE
  assert left - 60 < cols.min() and cols.max() < right + 60 and top - 80 < rows.min()
  assert rows.max() < bottom + 60
  assert mask[84, 222] > 0.9 and mask[150, 222] > 0.9  # forehead above the brows, and chin
  # Away from the dot, the change is the mask's feathered share of −0.1.
  change = out - astronaut
  far = (np.hypot(*np.mgrid[:512, :512][::-1] - align.apply(align.invert(matrix), eye)[:, None,
                                                                                        None])
         > 20) & (astronaut.min(-1) > 0.1)
  np.testing.assert_allclose(change[far], -0.1 * mask[far][:, None].repeat(3, 1), atol=2e-3)
  # The dot lands on the photo's left eye (the detected one, mapped through the fit).
  photo_eye = align.apply(align.invert(matrix), eye)
  px, py = peak(np.clip(change + 0.1 * mask[..., None], 0, None), *photo_eye, r=6)
  assert np.hypot(px - photo_eye[0], py - photo_eye[1]) < 1.0
  eyes = landmarks.frame_points(face.points)[0]
  assert np.hypot(*(photo_eye - eyes)) < 4.0  # and near the detector's own left eye


def test_detected_frame_matches_the_generators_on_generated_faces(detector):
  config = tiny(image_size=96, bank_size=24)
  images, _ = faces.generate(range(24), 96)
  known = photos.synthetic_frame(config)
  seen = photos.detected_frame(detector, images)
  assert "bank images" in seen.source
  use = [faces.LANDMARKS.index(n) for n in photos.ALIGN_LANDMARKS]
  assert np.abs(seen.points[use] - known.points[use]).max() < 2.0
  with pytest.raises(run_state.RunError, match="found faces in only 0 of"):
    photos.detected_frame(detector, np.full((6, 64, 64, 3), 0.5, np.float32))


def test_a_folder_banks_frame_comes_from_the_detector(detector, astronaut, tmp_path):
  """Any bank without landmarks (LFW, CelebA, a folder; here the folder fakes, generated faces
  at 32²) gets its frame from the detector; the photo's face is then aligned to it."""
  from dfi_jax.data import banks  # pylint: disable=import-outside-toplevel
  from dfi_jax.data.datasets import fakes  # pylint: disable=import-outside-toplevel
  from experiments.configs import folder  # pylint: disable=import-outside-toplevel
  fakes.make_folder(tmp_path / "folder")
  config = folder.get_config("tiny")
  config.folder, config.csv = str(tmp_path / "folder"), str(tmp_path / "folder/attributes.csv")
  bank = banks.load_bank(config)
  Image.fromarray((astronaut * 255).round().astype(np.uint8)).save(tmp_path / "a.png")
  loaded = photos.load(config, [str(tmp_path / "a.png")])
  tests = photos.tests_for(config, loaded, bank.images)
  face = tests.faces[0]
  assert "detector's landmarks on" in photos.bank_frame(config, bank.images, detector).source
  assert tests.images.shape == (1, 32, 32, 3) and face.residual < 1.5
  known = photos.synthetic_frame(tiny())  # the same generator: about the same frame
  np.testing.assert_allclose(face.target, known.points[[0, 1, 4, 5, 6]], atol=1.5)


def test_a_missing_detector_is_named_before_any_work(monkeypatch, tmp_path):
  real = landmarks.importlib.util.find_spec
  monkeypatch.setattr(landmarks.importlib.util, "find_spec",
                      lambda name, *a: None if name == "dlib" else real(name, *a))
  image = tmp_path / "a.png"
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  with pytest.raises(run_state.RunError, match=r"--config.align=face: .*pip install -e '.\[photos\]"
                     r".*dlib is not installed.*--config.align=none"):
    edit_run.run(tiny(), tmp_path / "w", [str(image)])
  assert not (tmp_path / "w").exists()
  photos.check(tiny(align="none"), [str(image)])  # fitting whole photos needs no detector


def test_animation_plays_the_sweep_forwards_and_back(tmp_path):
  frames = [np.full((8, 8, 3), v, np.float32) for v in (0.0, 0.5, 1.0)]
  for kind in ("gif", "webp"):
    photo_outputs.save_animation(tmp_path / f"a.{kind}", frames)
    with Image.open(tmp_path / f"a.{kind}") as anim:
      assert anim.format == kind.upper() and anim.n_frames == 4  # 0, .5, 1, .5
      values = []
      for k in range(anim.n_frames):
        anim.seek(k)
        values.append(int(np.asarray(anim.convert("RGB"))[4, 4, 0]))
      assert values == [0, 128, 255, 128]


def test_largest_keeps_one_face_per_photo(detector, astronaut, tmp_path):
  two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
  Image.fromarray((two * 255).round().astype(np.uint8)).save(tmp_path / "two.png")
  found = photos.read_photos(tiny(), [str(tmp_path / "two.png")], detector).found[0]
  assert len(found) == 2
  largest = photos.read_photos(tiny(faces="largest"), [str(tmp_path / "two.png")], detector)
  assert len(largest.found[0]) == 1


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory, astronaut):
  """One tiny run on the astronaut and a two-astronaut photo (the suite's only photo run)."""
  folder = tmp_path_factory.mktemp("photos")
  pixels = (astronaut * 255).round().astype(np.uint8)
  Image.fromarray(pixels).save(folder / "astronaut.png")
  Image.fromarray(np.concatenate([pixels, pixels[:, ::-1]], axis=1)).save(folder / "two.png")
  config = tiny(deltas=(0.8,), iterations=3, animate="gif")
  inputs = [str(folder / "astronaut.png"), str(folder / "two.png")]
  record = edit_run.run(config, folder / "run", inputs, ["eyeglasses"])
  return folder, record


def _changed_only_on_faces(original, edited, aligned_faces):
  """Pixels outside every face's mask are unchanged; each face has changed pixels."""
  masks = [photos.face_mask(a, original.shape[:2], 32) for a in aligned_faces]
  union = np.max(masks, axis=0)
  np.testing.assert_array_equal(edited[union == 0], original[union == 0])
  for mask in masks:
    assert (edited[mask > 0.5] != original[mask > 0.5]).any()


def test_a_real_photo_end_to_end(photo_run, detector):
  folder, record = photo_run
  run = folder / "run"
  assert record["data"] == "photos" and record["images"] == ["astronaut", "two_face1",
                                                             "two_face2"]
  original = np.asarray(Image.open(folder / "astronaut.png"))
  edited = np.asarray(Image.open(run / "edits" / "astronaut__eyeglasses__d0.8.png"))
  assert edited.shape == original.shape == (512, 512, 3)
  loaded = photos.load(tiny(), [str(folder / "astronaut.png")])
  face, = loaded.photos.found[0]
  frame = photos.synthetic_frame(tiny())
  matrix, _ = photos.fit_face(face.points, frame)
  _changed_only_on_faces(original, edited, [_alignment(matrix, face.points)])
  changed = np.nonzero((edited != original).any(-1))
  left, top, right, bottom = ASTRONAUT_FACE  # the change is on the face
  assert left - 60 < changed[1].min() and changed[1].max() < right + 60
  assert top - 80 < changed[0].min() and changed[0].max() < bottom + 60
  outputs = record["outputs"]
  assert outputs["aligned"] == ["photos/astronaut__aligned.png", "photos/two_face1__aligned.png",
                                "photos/two_face2__aligned.png"]
  assert Image.open(run / outputs["aligned"][0]).size == (128, 128)  # 32² crop, 4× for viewing
  html = (run / "index.html").read_text()
  for rel in outputs["side_by_side"]:  # written; the page shows close-ups and each photo once
    assert (run / rel).is_file()
  for rel in outputs["aligned"] + outputs["closeups"] + outputs["animations"]:
    assert (run / rel).is_file() and rel in html
  with Image.open(run / "animations" / "astronaut__eyeglasses.gif") as anim:
    assert anim.n_frames == 2 and anim.size == (512, 512)  # input, δ = 0.8


def test_a_two_face_photo_has_both_faces_edited(photo_run, detector):
  folder, record = photo_run
  run = folder / "run"
  assert record["outputs"]["group_edits"] == ["photos/two__eyeglasses__d0.8.png"]
  original = np.asarray(Image.open(folder / "two.png"))
  both = np.asarray(Image.open(run / "photos" / "two__eyeglasses__d0.8.png"))
  assert both.shape == original.shape == (512, 1024, 3)
  found = photos.load(tiny(), [str(folder / "two.png")]).photos.found[0]
  frame = photos.synthetic_frame(tiny())
  aligned = [_alignment(photos.fit_face(f.points, frame)[0], f.points) for f in found]
  _changed_only_on_faces(original, both, aligned)
  for k, one in enumerate(aligned):  # each face's own file has only that face changed
    alone = np.asarray(Image.open(run / "edits" / f"two_face{k + 1}__eyeglasses__d0.8.png"))
    _changed_only_on_faces(original, alone, [one])
    other = photos.face_mask(aligned[1 - k], original.shape[:2], 32) > 0
    own = photos.face_mask(one, original.shape[:2], 32) > 0
    np.testing.assert_array_equal(alone[other & ~own], original[other & ~own])


def test_own_photos_are_edited_at_photo_size_on_a_generated_bank(tmp_path, astronaut):
  config = tiny(photo_size=48, deltas=(0.8,), iterations=2)
  sized = photos.sized(config)
  assert sized.image_size == 48 and config.image_size == 32  # a copy; the config is kept
  assert photos.sized(tiny()).image_size == 32  # 0: image_size
  assert photos.sized(tiny(photo_size=48, data="folder")).image_size == 32  # a bank of files
  assert photos.sized(tiny(photo_size=48, bank_dir=str(tmp_path))).image_size == 32
  for bad, message in ((-1, "an integer in"), (2000, "an integer in"), (2, "0 or >=")):
    with pytest.raises(run_state.RunError, match=rf"--config.photo_size={bad}: expected {message}"):
      kit.validate(photos.sized(tiny(photo_size=bad)))
  Image.fromarray((astronaut * 255).round().astype(np.uint8)).save(tmp_path / "astronaut.png")
  edit_run.run(config, tmp_path / "run", [str(tmp_path / "astronaut.png")], ["smiling"])
  run = tmp_path / "run"
  state = np.load(run / "state" / "astronaut__smiling__d0.8.npz")
  assert state["image"].shape == (48, 48, 3)  # the crop was edited at 48²
  assert Image.open(run / "photos" / "astronaut__aligned.png").size == (192, 192)
  assert json.loads((run / "run.json").read_text())["settings"]["image_size"] == 48
  edited = np.asarray(Image.open(run / "edits" / "astronaut__smiling__d0.8.png"))
  assert edited.shape == (512, 512, 3)  # pasted back into the photo at its size


def test_a_photo_without_a_face_is_refused_and_nothing_written(tmp_path):
  Image.fromarray(skimage_data.coffee()).save(tmp_path / "coffee.png")
  with pytest.raises(run_state.RunError, match=r"--inputs=.*coffee.png: no face found"):
    edit_run.run(tiny(), tmp_path / "w", [str(tmp_path / "coffee.png")])
  assert not (tmp_path / "w").exists()


def test_the_run_record_lists_the_alignment(photo_run):
  folder, record = photo_run
  saved = json.loads((folder / "run" / "metrics.json").read_text())
  assert saved["outputs"]["side_by_side"] == ["photos/astronaut__eyeglasses__side_by_side.png",
                                              "photos/two__eyeglasses__side_by_side.png"]


def test_the_readme_python_example_runs(astronaut):
  """README's "From Python" block, run as written but with the tiny editor (seconds, not
  minutes with ImageNet VGG16)."""
  readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
  block = readme.split("### From Python")[1].split("```python\n")[1].split("```")[0]
  assert block.count("dfi_jax.load_editor()") == 1
  scope = {}
  exec(compile(block.replace("dfi_jax.load_editor()", "dfi_jax.load_editor('tiny')"),
               "README.md", "exec"), scope)
  edited, photo = scope["edited"], scope["photo"]
  assert set(edited) == {"eyeglasses"}
  assert edited["eyeglasses"].shape == (2, 512, 512, 3)
  assert edited["eyeglasses"].dtype == np.float32
  face, = landmarks.detect(scope["editor"].detector, photo)
  matrix, _ = photos.fit_face(face.points, scope["editor"].frame)
  mask = photos.face_mask(_alignment(matrix, face.points), (512, 512), 32)
  x = photo.astype(np.float32) / 255
  for image in edited["eyeglasses"]:  # the API pastes like the command: only the face changes
    np.testing.assert_array_equal(image[mask == 0], x[mask == 0])
    assert np.abs(image - x)[mask > 0.5].max() > 0.01


def test_the_paste_stops_at_the_hairline_unless_the_change_reaches_the_hair(detector, astronaut):
  face, = landmarks.detect(detector, astronaut)
  frame = photos.synthetic_frame(tiny(image_size=BANK, bank_size=50))
  matrix, _ = photos.fit_face(face.points, frame)
  aligned = _alignment(matrix, face.points)
  square = photos.crop(astronaut, matrix, BANK)
  points = photos.crop_points(aligned)
  face_only = align.hull_mask(photos.crop_polygon(aligned, photos.HAIRLINE) + 0.5, BANK, 0.0,
                              photos.FACE_FEATHER)
  on_face = square - 0.1 * face_only[..., None]  # darker face, nothing above the hairline
  assert not photos.changes_hair(aligned, square, on_face)
  out = photos.paste(astronaut, [square], [on_face], [aligned])
  hairline = align.apply(align.invert(matrix), points[17:27]).min(0)[1]  # the brows' top
  height = face.points[8, 1] - hairline
  above = int(hairline - 0.45 * height)  # above the hairline: the hat, unchanged
  np.testing.assert_array_equal(out[:above], astronaut[:above])
  assert np.abs(out - astronaut).max() > 0.05  # the face did change
  # A change over the face and the hair (older greys it) is pasted with the hair.
  everywhere = square - 0.1
  assert photos.changes_hair(aligned, square, everywhere)
  out = photos.paste(astronaut, [square], [everywhere], [aligned])
  assert (out[:above] != astronaut[:above]).any()


def test_zone_scores_tell_a_local_edit_from_a_global_one(detector, astronaut):
  face, = landmarks.detect(detector, astronaut)
  mouth = photo_zones.zone_mask(face.points, "mouth", astronaut.shape[:2])
  eyes = photo_zones.zone_mask(face.points, "eyes", astronaut.shape[:2])
  assert mouth.sum() > 200 and eyes.sum() > 200 and not (mouth & eyes).any()
  local = astronaut - 0.1 * mouth[..., None]
  s = photo_zones.scores(astronaut, local, face.points, "moustache")
  assert s["zone"] == "mouth" and s["rest_mean"] < 0.01 and s["local"]
  assert s["zone_mean"] == pytest.approx(25.5, abs=1.0)
  rows, cols = photo_zones.face_box(face.points, astronaut.shape[:2])
  repainted = astronaut.copy()
  repainted[rows, cols] -= 0.1  # the whole face box
  s = photo_zones.scores(astronaut, repainted, face.points, "moustache")
  assert s["rest_mean"] > 20 and not s["local"] and s["rest_changed"] > 0.9
  assert not photo_zones.scores(astronaut, local, face.points, "eyeglasses")["local"]
  assert photo_zones.scores(astronaut, local, face.points, "older")["zone"] is None


def test_each_face_is_pasted_mirrored_about_the_frames_midline(detector, astronaut, tmp_path):
  Image.fromarray((astronaut * 255).round().astype(np.uint8)).save(tmp_path / "a.png")
  config = tiny(where="features")
  loaded = photos.load(config, [str(tmp_path / "a.png")])
  frame = photos.synthetic_frame(config)
  face, = photos.photo_tests(config, loaded.photos, frame).faces
  assert face.blend.focus and face.blend.mirror == photos.midline(photos._subset(frame.points))
