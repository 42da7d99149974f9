"""Own photos: each face found, aligned into the bank's landmark frame, edited, pasted back.

With `config.align == "face"` (the default), every face `landmarks.detect` finds in a photo (or
only the largest, `config.faces == "largest"`) becomes one test image: the similarity that maps
its eye centres, nose tip and mouth corners onto the bank's mean landmarks (`Frame`) warps the
photo into a `size`² crop, the crop is edited like any test image, and the *change* (edit −
crop) is warped back with the inverse similarity, multiplied by a feathered mask around the face
(the 68 landmarks' hull with a forehead above the brows) and added to the full-resolution photo.
Pixels where the mask is 0 are exactly the photo's. `config.align == "none"` keeps the older
whole-photo fitting (`sources.photo_tests`).

The bank's frame: generated faces carry their landmarks (the mean over the bank's faces);
other banks (LFW, CelebA, folders: already aligned photos) get the mean of the detector's
landmarks over up to `FRAME_IMAGES` of their images — the same detector, so the same definition.

Matrices map landmark coordinates (pixel centres at integers, `faces`' convention): crop = M·photo.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageDraw
import scipy.spatial

from dfi_jax.dfi import align
from dfi_jax.dfi.interpolate import delta_tag
from dfi_jax.data import faces
from dfi_jax.data import figures
from dfi_jax.data import image_io
from dfi_jax.data import landmarks as landmarks_lib
from dfi_jax import run_state
from dfi_jax.data import sources

MODES = ("face", "none")
WHICH_FACES = ("all", "largest")
ANIMATIONS = ("", "gif", "webp")
# The frame points the similarity is fitted on: the steadiest of the detector's on generated
# faces (docs/photos.md: eyes 0.55 px, nose 1.1, mouth corners 1.2 at 64²; brows, chin, ears
# 1.4-3.2).
ALIGN_LANDMARKS = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")
FRAME_IMAGES = 64  # bank images the detector reads for a non-generated bank's frame
FRAME_MIN_FACES = 5
DETECT_SIDE = 256  # smaller bank images are enlarged to at least this before detection
MASK_GROW = 0.15  # the face hull is scaled by 1 + this about its centre
MASK_FEATHER = 0.03  # Gaussian blur σ, as a fraction of the crop side (in photo pixels)
FOREHEAD = 0.45  # the forehead reaches this × (chin − brows) above the brows
PANEL = 512  # longest side of a photo in side-by-sides and animations
FRAME_MS = 500  # per frame of an animation


class Frame(NamedTuple):
  """The bank's landmark frame."""
  points: np.ndarray  # [len(faces.LANDMARKS), 2] float64 mean landmarks at `size`², NaN = none
  size: int
  source: str  # how it was found, for the run's record


class FaceAlignment(NamedTuple):
  """One face of one photo, as a test image row."""
  photo: int  # index among the input photos
  photo_name: str
  rank: int  # 1 = the photo's largest face
  faces_in_photo: int  # faces of this photo being edited
  matrix: np.ndarray  # [2, 3] photo -> crop
  points: np.ndarray  # [68, 2] detected landmarks in the photo
  score: float  # the detector's
  target: np.ndarray  # [len(ALIGN_LANDMARKS), 2] the frame's points the face was fitted to
  residual: float  # RMS distance (crop pixels) of the fitted points from `target`


class Loaded(NamedTuple):
  """`load`'s result: photos whose faces were found (align=face), or photos fitted whole."""
  photos: Photos | None
  fitted: sources.TestImages | None
  detector: landmarks_lib.Detector | None


class Photos(NamedTuple):
  """The user's photos and the faces found in them (before the bank's frame is known)."""
  paths: list[str]
  names: list[str]
  images: list[np.ndarray]  # [H, W, 3] float32
  found: list[list[landmarks_lib.DetectedFace]]


def check(config, inputs: Sequence[str]) -> None:
  """The photo settings, and the detector installed when it will be needed; before any work."""
  mode = config.get("align", "none")
  if inputs and mode == "face":
    try:
      landmarks_lib.check_installed()
    except landmarks_lib.MissingDetector as e:
      raise run_state.RunError(f"--config.align=face: {e}; or pass --config.align=none to fit "
                               "the whole photo instead") from None


def find_faces(config, image: np.ndarray, detector: landmarks_lib.Detector,
               label: str) -> list[landmarks_lib.DetectedFace]:
  """The faces of `image` to edit: all, or the largest (`config.faces`).

  Raises:
    RunError: no face found (the message starts with `label`).
  """
  detected = landmarks_lib.detect(detector, image, config.face_threshold)
  if not detected:
    raise run_state.RunError(
        f"{label}: no face found (dlib's frontal face detector, score >= "
        f"{config.face_threshold:g}); use a photo with a frontal face, lower "
        "--config.face_threshold, or pass --config.align=none to edit the whole image")
  return detected[:1] if config.faces == "largest" else detected


def read_photos(config, inputs: Sequence[str], detector: landmarks_lib.Detector) -> Photos:
  """Loads each photo and finds its faces (`find_faces`), failing on the first without one."""
  images = [image_io.load_image(path) for path in inputs]
  found = [find_faces(config, image, detector, f"--inputs={path}")
           for path, image in zip(inputs, images)]
  return Photos(list(inputs), sources.photo_names(inputs), images, found)


def synthetic_frame(config) -> Frame:
  """The mean landmarks of the generated bank's faces at `config.image_size`²."""
  seeds = range(config.bank_seed, config.bank_seed + config.bank_size)
  points = align.landmarks([faces.sample_face(s) for s in seeds], config.image_size)
  return Frame(points.mean(0), config.image_size,
               f"the generator's landmarks of the bank's {len(seeds)} faces")


def detected_frame(detector: landmarks_lib.Detector, images: np.ndarray,
                   count: int = FRAME_IMAGES) -> Frame:
  """The mean detector landmarks over up to `count` of `images` (`[N, S, S, 3]`), evenly spread.

  Images under `DETECT_SIDE`² are enlarged (Lanczos) first: the detector misses faces under ~40 px.

  Raises:
    RunError: faces found in fewer than `FRAME_MIN_FACES` of them.
  """
  size = images.shape[1]
  scale = max(1, -(-DETECT_SIDE // size))
  picked = np.unique(np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int))
  points = []
  for i in picked:
    image = images[i] if scale == 1 else image_io.resize(images[i], (size * scale,) * 2)
    found = landmarks_lib.detect(detector, image, threshold=0.0)
    if found:
      points.append((landmarks_lib.frame_points(found[0].points) + 0.5) / scale - 0.5)
  if len(points) < FRAME_MIN_FACES:
    raise run_state.RunError(
        f"the bank's frame: the face detector found faces in only {len(points)} of "
        f"{len(picked)} bank images; pass --config.align=none to fit whole photos instead")
  return Frame(np.mean(points, 0), size,
               f"the detector's landmarks on {len(points)} of {len(picked)} bank images")


def bank_frame(config, bank_images: np.ndarray, detector: landmarks_lib.Detector) -> Frame:
  if config.data == "synthetic":
    return synthetic_frame(config)
  return detected_frame(detector, bank_images)


def _subset(points: np.ndarray) -> np.ndarray:
  return points[[faces.LANDMARKS.index(n) for n in ALIGN_LANDMARKS]]


def fit_face(points: np.ndarray, frame: Frame) -> tuple[np.ndarray, float]:
  """`[2, 3]` similarity mapping a face's `[68, 2]` detected landmarks onto the frame's, and
  its RMS residual in crop pixels."""
  return align.similarity_fit(_subset(landmarks_lib.frame_points(points)),
                              _subset(frame.points))


def _scale(matrix: np.ndarray) -> float:
  return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _translate(matrix: np.ndarray, offset) -> np.ndarray:
  """`matrix` applied to points given in a frame whose origin is `offset` in the original."""
  return np.concatenate([matrix[:, :2], (matrix[:, 2] + matrix[:, :2] @ offset)[:, None]], 1)


def crop(photo: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
  """`[size, size, 3]` float32: `photo` (`[H, W, 3]`) warped by `matrix` (bicubic).

  Only the region the crop sees is read; where the map shrinks by more than 1.5× it is first
  shrunk with Lanczos (antialiased) to about the crop's scale. Outside the photo its edge repeats.
  """
  inv = align.invert(matrix)
  corners = align.apply(inv, np.array([[-1, -1], [size, -1], [-1, size], [size, size]], float))
  margin = 3.0 / min(_scale(matrix), 1.0)
  x0, y0 = np.floor(corners.min(0) - margin).astype(int)
  x1, y1 = np.ceil(corners.max(0) + margin).astype(int) + 1
  h, w = photo.shape[:2]
  region = photo[max(y0, 0):max(min(y1, h), 0), max(x0, 0):max(min(x1, w), 0)]
  if region.size == 0:
    raise ValueError(f"the face's crop {corners.tolist()} lies outside the {w}x{h} photo")
  region = np.pad(region, ((max(-y0, 0), max(y1 - h, 0)), (max(-x0, 0), max(x1 - w, 0)),
                           (0, 0)), mode="edge")
  m = _translate(matrix, np.array([x0, y0], float))  # region pixels -> crop
  shrink = _scale(m)
  if shrink < 1 / 1.5:
    rh, rw = region.shape[:2]
    nh, nw = max(1, round(rh * shrink)), max(1, round(rw * shrink))
    region = image_io.resize(region, (nh, nw))
    # Lanczos resize maps pixel centres p -> (p + ½)·(new/old) − ½ on each axis.
    sx, sy = nw / rw, nh / rh
    to_small = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
    m = m @ np.vstack([align.invert(to_small), [0, 0, 1]])
  return align.warp(region, align.pixel_matrix(m), size)


def crop_points(face: FaceAlignment) -> np.ndarray:
  """The face's `[68, 2]` landmarks in its crop."""
  return align.apply(face.matrix, face.points)


def face_polygon(face: FaceAlignment) -> np.ndarray:
  """`[P, 2]` convex polygon in the photo around the face: the hull of its 68 landmarks and a
  forehead (the brows raised by `FOREHEAD` × the brows-to-chin height, upright in the crop)."""
  inside = crop_points(face)
  brows = inside[17:27]
  height = inside[8, 1] - brows[:, 1].mean()
  points = np.concatenate([inside, brows - np.array([0.0, FOREHEAD * height])])
  hull = points[scipy.spatial.ConvexHull(points).vertices]
  return align.apply(align.invert(face.matrix), hull)


def face_mask(face: FaceAlignment, shape: tuple[int, int], size: int) -> np.ndarray:
  """`[H, W]` float32 in [0, 1]: the feathered face region in the photo; exactly 0 elsewhere."""
  radius = MASK_FEATHER * size / _scale(face.matrix)  # crop pixels -> photo pixels
  return align.hull_mask(face_polygon(face) + 0.5, shape, MASK_GROW,
                         radius / max(shape))


def paste(photo: np.ndarray, crops: Sequence[np.ndarray], edits: Sequence[np.ndarray],
          aligned: Sequence[FaceAlignment]) -> np.ndarray:
  """`photo` (`[H, W, 3]`) plus each face's change, warped back and feathered.

  Args:
    photo: the full-resolution original.
    crops, edits: per face, `[S, S, 3]` the aligned crop and its edit.
    aligned: per face, its `FaceAlignment`.

  Returns `[H, W, 3]` float32; pixels outside every face's mask are exactly `photo`'s.
  """
  out = np.array(photo, np.float32)
  for square, edit, face in zip(crops, edits, aligned):
    size = square.shape[0]
    mask = face_mask(face, photo.shape[:2], size)
    rows, cols = np.nonzero(mask)
    if not len(rows):
      continue
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    back = align.invert(face.matrix)
    back[:, 2] -= (x0, y0)  # crop -> the mask's bounding box
    change = align.warp(np.asarray(edit, np.float32) - square, align.pixel_matrix(back),
                        (y1 - y0, x1 - x0), clip=False)
    out[y0:y1, x0:x1] += mask[y0:y1, x0:x1, None] * change
  return np.clip(out, 0.0, 1.0)


def photo_tests(config, photos: Photos, frame: Frame) -> sources.TestImages:
  """One test image per face: its aligned crop at the frame's size.

  A photo with one face gives a row named like the photo; with several, `<photo>_face<k>`
  (k = 1 for the largest).
  """
  names, crops, originals, aligned = [], [], [], []
  for p, (name, image, found) in enumerate(zip(photos.names, photos.images, photos.found)):
    for rank, face in enumerate(found, 1):
      matrix, residual = fit_face(face.points, frame)
      names.append(name if len(found) == 1 else f"{name}_face{rank}")
      crops.append(crop(image, matrix, frame.size))
      originals.append(image)
      aligned.append(FaceAlignment(p, name, rank, len(found), matrix, face.points, face.score,
                                   _subset(frame.points), residual))
  return sources.TestImages(names, np.stack(crops), originals=originals, faces=aligned)


def load(config, inputs: Sequence[str]) -> Loaded:
  """The user's photos, read (and their faces found) before any long computation."""
  if config.align == "none":
    return Loaded(None, sources.photo_tests(config.image_size, inputs), None)
  detector = landmarks_lib.load_detector()
  return Loaded(read_photos(config, inputs, detector), None, detector)


def tests_for(config, loaded: Loaded, bank_images: np.ndarray) -> sources.TestImages:
  """`load`'s photos as test images for a bank of `bank_images` (`[N, S, S, 3]`)."""
  if loaded.fitted is not None:
    return loaded.fitted
  return photo_tests(config, loaded.photos, bank_frame(config, bank_images, loaded.detector))


def to_photo(tests: sources.TestImages, i: int, result: np.ndarray) -> np.ndarray:
  """Test image i's `[S, S, 3]` result at its photo's size (aligned: this face pasted)."""
  face = tests.faces[i]
  return paste(tests.originals[i], [tests.images[i]], [result], [face])


# ---------------------------------------------------------------------------------------------
# Outputs: per photo and edit, the photo with all its faces edited; side-by-sides; the aligned
# crops with their landmarks; animations of the δ sweep.

def _photo_rows(tests: sources.TestImages) -> dict[str, list[int]]:
  rows: dict[str, list[int]] = {}
  for i, face in enumerate(tests.faces):
    rows.setdefault(face.photo_name, []).append(i)
  return rows


def _image_names(tests: sources.TestImages) -> list[str]:
  """Per photo (aligned faces) or per test image: the names animations are written under."""
  return list(_photo_rows(tests)) if tests.faces is not None else list(tests.names)


def output_files(config, tests: sources.TestImages, attributes: Sequence[str]) -> dict:
  """The files `save_outputs` writes (relative to the workdir), by kind."""
  out: dict[str, list[str]] = {}
  if tests.faces is not None:
    rows = _photo_rows(tests)
    out["group_edits"] = [f"photos/{p}__{a}__{delta_tag(d)}.png" for p, r in rows.items()
                          if len(r) > 1 for a in attributes for d in config.deltas]
    out["side_by_side"] = [f"photos/{p}__{a}__side_by_side.png" for p in rows
                           for a in attributes]
    out["aligned"] = [f"photos/{n}__aligned.png" for n in tests.names]
  if config.get("animate", ""):
    out["animations"] = [f"animations/{n}__{a}.{config.animate}" for n in _image_names(tests)
                         for a in attributes]
  return out


def _shrink(image: np.ndarray, side: int = PANEL) -> np.ndarray:
  h, w = image.shape[:2]
  scale = side / max(h, w)
  if scale >= 1:
    return image
  return image_io.resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def aligned_figure(tests: sources.TestImages, i: int, scale: int = 4) -> np.ndarray:
  """Test image i's crop enlarged `scale`× (nearest) with its 68 landmarks (green) and the
  frame's points it was fitted to (red rings): `[S·scale, S·scale, 3]` uint8."""
  pixels = image_io.to_uint8(tests.images[i])
  size = pixels.shape[0]
  img = Image.fromarray(pixels).resize((size * scale, size * scale), Image.Resampling.NEAREST)
  draw = ImageDraw.Draw(img)
  for x, y in (crop_points(tests.faces[i]) + 0.5) * scale:
    draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(40, 230, 60))
  for x, y in (tests.faces[i].target + 0.5) * scale:
    draw.ellipse((x - 4, y - 4, x + 4, y + 4), outline=(240, 40, 40), width=2)
  return np.asarray(img)


def save_animation(path: str | os.PathLike, frames: Sequence[np.ndarray],
                   duration_ms: int = FRAME_MS) -> None:
  """Writes `[H, W, 3]` float frames as a looping animated GIF or WebP (by the suffix),
  atomically; the sequence plays forwards then back."""
  images = [Image.fromarray(image_io.to_uint8(f)) for f in frames]
  loop = images + images[-2:0:-1]
  kind = Path(path).suffix.lower().lstrip(".")
  buf = io.BytesIO()
  options = dict(lossless=True) if kind == "webp" else dict(optimize=False)
  loop[0].save(buf, format={"gif": "GIF", "webp": "WEBP"}[kind], save_all=True,
               append_images=loop[1:], duration=duration_ms, loop=0, **options)
  image_io.atomic_write_bytes(path, buf.getvalue())


def save_outputs(workdir: Path, config, tests: sources.TestImages, items, results: np.ndarray,
                 finite: np.ndarray) -> None:
  """Writes `output_files`' files from the run's results.

  Args:
    items: `[(test image index, attribute)]`, the columns of `results`.
    results: `[len(config.deltas), len(items), S, S, 3]`; finite: `[len(deltas), len(items)]`.
  """
  deltas = list(config.deltas)
  attributes = list(dict.fromkeys(a for _, a in items))
  column = {item: j for j, item in enumerate(items)}
  anim = config.get("animate", "")
  if tests.faces is not None:
    (workdir / "photos").mkdir(exist_ok=True)
    for i, name in enumerate(tests.names):
      image_io.save_png(workdir / "photos" / f"{name}__aligned.png", aligned_figure(tests, i))
    for photo, rows in _photo_rows(tests).items():
      original = tests.originals[rows[0]]
      for a in attributes:
        sweep = [original]
        for s, d in enumerate(deltas):
          done = [i for i in rows if finite[s, column[(i, a)]]]
          edited = paste(original, [tests.images[i] for i in done],
                         [results[s, column[(i, a)]] for i in done],
                         [tests.faces[i] for i in done])
          if len(rows) > 1:
            image_io.save_png(workdir / "photos" / f"{photo}__{a}__{delta_tag(d)}.png", edited)
          sweep.append(edited)
        panels = [_shrink(x) for x in sweep]
        figures.save_grid(workdir / "photos" / f"{photo}__{a}__side_by_side.png", [panels],
                          col_labels=["input"] + [f"{a} d={d:g}" for d in deltas])
        if anim:
          (workdir / "animations").mkdir(exist_ok=True)
          save_animation(workdir / "animations" / f"{photo}__{a}.{anim}", panels)
  elif anim:
    (workdir / "animations").mkdir(exist_ok=True)
    for i, name in enumerate(tests.names):
      for a in attributes:
        frames = [tests.images[i]] + [results[s, column[(i, a)]] for s in range(len(deltas))
                                      if finite[s, column[(i, a)]]]
        big = [np.repeat(np.repeat(f, 4, 0), 4, 1) for f in frames]  # 64² is hard to see
        save_animation(workdir / "animations" / f"{name}__{a}.{anim}", big)


def index_sections(config, tests: sources.TestImages, attributes: Sequence[str]) -> list[dict]:
  """index.html's sections for `output_files`."""
  files = output_files(config, tests, attributes)
  sections = []
  if tests.faces is not None:
    sections.append(dict(
        heading="Your photos",
        text=("Each face found was aligned to the bank's landmark frame (its eye centres, nose "
              "tip and mouth corners fitted by a similarity), edited there, and the change "
              "pasted back through a feathered face mask; pixels outside the mask are the "
              "photo's own."),
        figures=[dict(src=f, caption=Path(f).stem.replace("__", " · ")) for f in
                 files["side_by_side"] + files["group_edits"] + files["aligned"]]))
  if files.get("animations"):
    sections.append(dict(heading="The δ sweep, animated", figures=[
        dict(src=f, caption=Path(f).stem.replace("__", " · ")) for f in files["animations"]]))
  return sections
