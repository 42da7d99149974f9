"""Faces and their landmarks in photos: dlib's HOG detector and the official demo2's 68-point model.

The detector is `dlib.get_frontal_face_detector()` and the landmarks come from
`shape_predictor_68_face_landmarks.dat` as shipped by the `face-recognition-models` package (the
model the official high-resolution demo uses); both run offline on the CPU in about 0.1 s for a
512² photo. They are an optional dependency (`pip install -e '.[photos]'`): `load_detector`
raises `MissingDetector` with that line when they are not installed. The choice against
MediaPipe's face mesh was made by measurement (`research/landmark_probe.py`; the numbers are
in docs/photos.md).

Points are `(x, y)` in the photo's pixels with pixel (row i, column j) centred at (x, y) = (j, i),
the convention of `faces` landmarks. `frame_points` maps the 68 points onto the generated faces'
named landmarks (`faces.LANDMARKS`): image-left eye = the mean of points 36–41, and so on.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from dfi_jax.data import faces

NUM_POINTS = 68
# dlib's 68 points (iBUG 300-W order) averaged into the generator's named landmarks. "left" is
# the image's left, as in `faces`. The generator has no counterpart of its "forehead".
DLIB68 = {
    "left_eye": tuple(range(36, 42)), "right_eye": tuple(range(42, 48)),
    "left_brow": tuple(range(17, 22)), "right_brow": tuple(range(22, 27)),
    "nose_tip": (30,), "mouth_left": (48,), "mouth_right": (54,), "mouth_centre": (62, 66),
    "chin": (8,), "left_ear": (0,), "right_ear": (16,),
}
DEFAULT_THRESHOLD = 0.3
MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = "pip install -e '.[photos]' (dlib-bin and face-recognition-models)"


class MissingDetector(ImportError):
  """dlib or the 68-point model is not installed; the message says how to install them."""


class Detector(NamedTuple):
  """The loaded models (opaque dlib objects)."""
  faces: Any  # dlib.fhog_object_detector
  shape: Any  # dlib.shape_predictor


class DetectedFace(NamedTuple):
  """One face found in a photo."""
  box: np.ndarray  # [4] float64 left, top, right, bottom (pixels)
  score: float  # the HOG detector's confidence (> 0: above its own threshold)
  points: np.ndarray  # [68, 2] float64 (x, y)


def model_path() -> Path:
  """The 68-point model file inside the installed `face-recognition-models` package.

  Found without importing the package, whose `__init__` needs setuptools' `pkg_resources`
  (gone from recent setuptools).
  """
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise MissingDetector(f"finding faces in photos needs {INSTALL_HINT}: "
                          "face_recognition_models is not installed")
  path = Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_FILE
  if not path.is_file():
    raise MissingDetector(f"{path}: missing from face_recognition_models; reinstall it "
                          f"({INSTALL_HINT})")
  return path


def check_installed() -> None:
  """Raises `MissingDetector` (one line saying what to install) unless dlib and the model are
  there; cheap (does not load the 100 MB model)."""
  if importlib.util.find_spec("dlib") is None:
    raise MissingDetector(f"finding faces in photos needs {INSTALL_HINT}: dlib is not installed")
  model_path()


def load_detector() -> Detector:
  """dlib's frontal face detector and the 68-point shape predictor (about 1 s, 100 MB)."""
  check_installed()
  import dlib  # pylint: disable=import-outside-toplevel
  return Detector(dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_path())))


def _as_uint8(image: np.ndarray) -> np.ndarray:
  x = np.asarray(image)
  if x.ndim != 3 or x.shape[-1] != 3:
    raise ValueError(f"image has shape {x.shape}; expected [H, W, 3]")
  if x.dtype != np.uint8:
    x = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
  return np.ascontiguousarray(x)


def detect(detector: Detector, image: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
           upsample: int = 1, max_side: int = 1024) -> list[DetectedFace]:
  """Every face in `image` with its 68 landmarks, the largest first.

  Args:
    detector: `load_detector()`.
    image: `[H, W, 3]` float32 in [0, 1] (or uint8).
    threshold: the lowest detector score kept (dlib's `adjust_threshold`; its own default is 0).
      `DEFAULT_THRESHOLD` rejects a round badge on the astronaut's suit (score 0.12) and keeps
      her face (1.16).
    upsample: times the detector doubles the image first (1: faces down to ~40 px are found).
    max_side: faces are searched in a copy shrunk to at most this side (a 12-megapixel photo
      would take seconds); landmarks are then placed on the full-resolution image.
  """
  import dlib  # pylint: disable=import-outside-toplevel
  pixels = _as_uint8(image)
  h, w = pixels.shape[:2]
  scale = min(1.0, max_side / max(h, w))
  small = pixels
  if scale < 1.0:
    small = np.asarray(Image.fromarray(pixels).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS))
  rects, scores, _ = detector.faces.run(small, upsample, threshold)
  found = []
  for rect, score in zip(rects, scores):
    box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64) / scale
    shape = detector.shape(pixels, dlib.rectangle(*(int(round(v)) for v in box)))
    points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(NUM_POINTS)],
                      np.float64)
    found.append(DetectedFace(box, float(score), points))
  return sorted(found, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def frame_points(points: np.ndarray) -> np.ndarray:
  """`[68, 2]` dlib points -> `[len(faces.LANDMARKS), 2]` in that order; NaN where none maps."""
  points = np.asarray(points, np.float64)
  if points.shape != (NUM_POINTS, 2):
    raise ValueError(f"points have shape {points.shape}; expected ({NUM_POINTS}, 2)")
  out = np.full((len(faces.LANDMARKS), 2), np.nan)
  for k, name in enumerate(faces.LANDMARKS):
    if name in DLIB68:
      out[k] = points[list(DLIB68[name])].mean(0)
  return out
