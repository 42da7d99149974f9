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

from typing import NamedTuple, Sequence

import ml_collections
import numpy as np
import scipy.spatial

from dfi_jax.dfi import align
from dfi_jax.data import faces
from dfi_jax.data import fitting
from dfi_jax.data import image_io
from dfi_jax.data import landmarks as landmarks_lib
from dfi_jax.base import run_state
from dfi_jax.data import sources
from dfi_jax.runs import photo_blend

MODES = ("face", "none")
WHICH_FACES = ("all", "largest")
ANIMATIONS = ("", "gif", "webp")
# The frame points the similarity is fitted on: the steadiest of the detector's on generated
# faces (docs/photos.md: eyes 0.55 px, nose 1.1, mouth corners 1.2 at 64²; brows, chin, ears
# 1.4-3.2).
ALIGN_LANDMARKS = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")
MIN_PHOTO_SIZE = 32  # the smallest config.photo_size (as config.image_size)
FRAME_IMAGES = 64  # bank images the detector reads for a non-generated bank's frame
FRAME_MIN_FACES = 5
DETECT_SIDE = 256  # smaller bank images are enlarged to at least this before detection
MASK_GROW = 0.15  # the face-and-hair hull is scaled by 1 + this about its centre
MASK_FEATHER = 0.03  # Gaussian blur σ, as a fraction of the crop side (in photo pixels)
FOREHEAD = 0.45  # the hair reaches this × (chin − brows) above the brows
# The face alone (every edit whose change does not reach into the hair): the hull up to the
# hairline (a face's upper third is about half its brows-to-chin height), not grown, feathered
# by FACE_FEATHER; hat, collar and background stay the photo's own.
HAIRLINE = 0.3
FACE_FEATHER = 0.015
# An edit's change pasted with the hair when its mean |change| in the hair band (the
# face-and-hair hull minus the face's) is at least this × its mean over the face: found from
# the edit itself (older greys the hair; eyeglasses leave it), no list of attributes.
HAIR_SHARE = 0.5


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
  blend: photo_blend.Blend = photo_blend.Blend()  # how its change is pasted back


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


def sized(config):
  """`config` for own photos: `image_size` set to `config.photo_size` where the bank is generated
  (the generator renders its faces at any size) and photo_size is a valid image size; else
  `config` itself (0, or a bad photo_size that `kit.validate` then names). A copy, never changed
  in place."""
  size = config.get("photo_size", 0)
  if (not isinstance(size, int) or not MIN_PHOTO_SIZE <= size <= 1024
      or config.get("data", "synthetic") != "synthetic" or config.get("bank_dir", "")):
    return config
  out = ml_collections.ConfigDict(config.to_dict())
  out.image_size = size
  return out


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
    # The detector (upsampled once) finds faces down to ~40 px in a copy shrunk to 1024 px.
    smallest = round(40 * max(1.0, max(image.shape[:2]) / 1024))
    raise run_state.RunError(
        f"{label}: no face found (dlib's frontal face detector, score >= "
        f"{config.face_threshold:g}; faces under about {smallest} px across in this "
        f"{image.shape[1]}x{image.shape[0]} photo are too small to find); use a photo with a "
        "frontal face (crop closer to a small one), lower --config.face_threshold, or pass "
        "--config.align=none to edit the whole image")
  return detected[:1] if config.faces == "largest" else detected


def read_photos(config, inputs: Sequence[str], detector: landmarks_lib.Detector) -> Photos:
  """Loads each photo and finds its faces (`find_faces`), failing on the first without one."""
  images = [image_io.load_image(path) for path in inputs]
  found = [find_faces(config, image, detector, f"--inputs={path}")
           for path, image in zip(inputs, images)]
  return Photos(list(inputs), sources.photo_names(inputs), images, found)


def synthetic_frame(config) -> Frame:
  """The mean landmarks of the generated bank's faces at `config.image_size`² (cached)."""
  return Frame(sources.synthetic_labels(config)["mean_landmarks"], config.image_size,
               f"the generator's landmarks of the bank's {config.bank_size} faces")


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
    image = images[i] if scale == 1 else fitting.resize(images[i], (size * scale,) * 2)
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


def midline(target: np.ndarray) -> float:
  """The frame's vertical midline (crop x, pixels) from its `ALIGN_LANDMARKS` points: the mean
  x of two eyes, the nose tip and two mouth corners."""
  return float(np.mean(target[:, 0]))


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
    region = fitting.resize(region, (nh, nw))
    # Lanczos resize maps pixel centres p -> (p + ½)·(new/old) − ½ on each axis.
    sx, sy = nw / rw, nh / rh
    to_small = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
    m = m @ np.vstack([align.invert(to_small), [0, 0, 1]])
  return align.warp(region, align.pixel_matrix(m), size)


def crop_points(face: FaceAlignment) -> np.ndarray:
  """The face's `[68, 2]` landmarks in its crop."""
  return align.apply(face.matrix, face.points)


def crop_polygon(face: FaceAlignment, forehead: float = FOREHEAD) -> np.ndarray:
  """`[P, 2]` convex polygon in the crop around the face: the hull of its 68 landmarks and a
  forehead (the brows raised by `forehead` × the brows-to-chin height, upright in the crop)."""
  inside = crop_points(face)
  brows = inside[17:27]
  height = inside[8, 1] - brows[:, 1].mean()
  points = np.concatenate([inside, brows - np.array([0.0, forehead * height])])
  return points[scipy.spatial.ConvexHull(points).vertices]


def face_polygon(face: FaceAlignment, forehead: float = FOREHEAD) -> np.ndarray:
  """`crop_polygon` in the photo."""
  return align.apply(align.invert(face.matrix), crop_polygon(face, forehead))


def face_mask(face: FaceAlignment, shape: tuple[int, int], size: int, hair: bool = True
              ) -> np.ndarray:
  """`[H, W]` float32 in [0, 1]: the feathered face region in the photo (with the hair, or
  up to the hairline only); exactly 0 elsewhere."""
  feather, forehead, grow = ((MASK_FEATHER, FOREHEAD, MASK_GROW) if hair
                             else (FACE_FEATHER, HAIRLINE, 0.0))
  radius = feather * size / _scale(face.matrix)  # crop pixels -> photo pixels
  return align.hull_mask(face_polygon(face, forehead) + 0.5, shape, grow, radius / max(shape))


def changes_hair(face: FaceAlignment, square: np.ndarray, edit: np.ndarray) -> bool:
  """Whether the edit's change (`[S, S, 3]` edit − crop) reaches into the hair: its mean
  |change| over the hair band is >= `HAIR_SHARE` × its mean over the face (crop masks)."""
  size = square.shape[0]
  face_only = align.hull_mask(crop_polygon(face, HAIRLINE) + 0.5, size, 0.0, FACE_FEATHER)
  with_hair = align.hull_mask(crop_polygon(face) + 0.5, size, MASK_GROW, MASK_FEATHER)
  band = np.clip(with_hair - face_only, 0.0, 1.0)
  change = np.abs(np.asarray(edit, np.float32) - square).mean(-1)
  mean = lambda m: float((change * m).sum() / max(m.sum(), 1e-6))  # noqa: E731
  return mean(band) >= HAIR_SHARE * mean(face_only)


def paste(photo: np.ndarray, crops: Sequence[np.ndarray], edits: Sequence[np.ndarray],
          aligned: Sequence[FaceAlignment]) -> np.ndarray:
  """`photo` (`[H, W, 3]`) plus each face's change, warped back and feathered.

  Args:
    photo: the full-resolution original.
    crops, edits: per face, `[S, S, 3]` the aligned crop and its edit.
    aligned: per face, its `FaceAlignment`.

  Returns `[H, W, 3]` float32; pixels outside every face's mask are exactly `photo`'s. The
  mask stops at the hairline unless the change reaches into the hair (`changes_hair`).
  """
  out = np.array(photo, np.float32)
  for square, edit, face in zip(crops, edits, aligned):
    size = square.shape[0]
    edit = square + photo_blend.blended_change(square, edit, face.blend)
    mask = face_mask(face, photo.shape[:2], size, changes_hair(face, square, edit))
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
  target = _subset(frame.points)  # the frame's, so every face's (and its blend)
  blend = photo_blend.blend_for(config, midline(target))
  for p, (name, image, found) in enumerate(zip(photos.names, photos.images, photos.found)):
    for rank, face in enumerate(found, 1):
      matrix, residual = fit_face(face.points, frame)
      names.append(name if len(found) == 1 else f"{name}_face{rank}")
      crops.append(crop(image, matrix, frame.size))
      originals.append(image)
      aligned.append(FaceAlignment(p, name, rank, len(found), matrix, face.points, face.score,
                                   target, residual, blend))
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
