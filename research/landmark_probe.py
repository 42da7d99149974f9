"""Measures a face/landmark detector on generated faces (known landmarks) and on real photos.

  python -m research.landmark_probe --detector=dlib --out=runs/landmarks_dlib.json
  python -m research.landmark_probe --detector=mediapipe --out=runs/landmarks_mp.json

`dlib` is the one `dfi_jax.data.landmarks` uses (`pip install -e '.[photos]'`); `mediapipe` needs
`mediapipe==0.10.14` in an environment of its own (it pins protobuf<5, the test extra's
tensorflow-cpu needs protobuf>=6.31). Only NumPy, Pillow and the detector are imported (no JAX).

Per render size: the detection rate on `--num_faces` held-out generated faces, the faces found
beyond one per image (false detections), each landmark's error against the generator's own
landmarks (in pixels of the bank's `--bank_size`² frame, and as a fraction of the distance
between the eyes), and the alignment error: how far the eye and mouth landmarks land from where
the known landmarks' similarity fit puts them, in the bank's frame. Real photos: faces found in
scikit-image's bundled photos (when installed; a human face is in `astronaut` and `camera`), and
the time per photo.
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from dfi_jax.data import faces
from dfi_jax.data import landmarks as landmarks_lib

_DETECTOR = flags.DEFINE_enum("detector", "dlib", ["dlib", "mediapipe"], "Which detector.")
_OUT = flags.DEFINE_string("out", None, "JSON file for the numbers (optional).")
_NUM_FACES = flags.DEFINE_integer("num_faces", 200, "Generated faces per size.")
_SIZES = flags.DEFINE_list("sizes", ["64", "128", "256"], "Render sizes of the generated faces.")
_BANK_SIZE = flags.DEFINE_integer("bank_size", 64, "Errors are reported in this frame's pixels.")
_SEED = flags.DEFINE_integer("seed", 10_000_000, "First generated face (held out of banks).")
_THRESHOLD = flags.DEFINE_float("threshold", 0.0, "dlib: the lowest detector score kept (the "
                                "runs use landmarks.DEFAULT_THRESHOLD).")
_UPSAMPLE_TO = flags.DEFINE_integer("upsample_to", 256, "Images smaller than this are enlarged "
                                    "(bicubic) to it before detection; landmarks scaled back.")

# Photos bundled with scikit-image, with the number of human faces in each.
PHOTOS = dict(astronaut=1, camera=1, chelsea=0, coffee=0, rocket=0, horse=0,
              hubble_deep_field=0, retina=0, brick=0, grass=0, gravel=0, coins=0, page=0,
              text=0, moon=0, clock=0, immunohistochemistry=0, logo=0, colorwheel=0)

# MediaPipe face mesh indices averaged into the generator's landmarks (image-left first).
MESH = {
    "left_eye": (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246),
    "right_eye": (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398,
                  466),
    "left_brow": (46, 52, 53, 55, 63, 65, 66, 70, 105, 107),
    "right_brow": (276, 282, 283, 285, 293, 295, 296, 300, 334, 336),
    "nose_tip": (1,), "mouth_left": (61,), "mouth_right": (291,), "mouth_centre": (13, 14),
    "chin": (152,), "left_ear": (234,), "right_ear": (454,),
}
ALIGNED = ("left_eye", "right_eye", "mouth_left", "mouth_right")  # where alignment error is read


def dlib_backend():
  detector = landmarks_lib.load_detector()

  def run(pixels: np.ndarray) -> list[np.ndarray]:
    return [landmarks_lib.frame_points(f.points)
            for f in landmarks_lib.detect(detector, pixels, _THRESHOLD.value)]
  return run


def mediapipe_backend():
  import mediapipe as mp  # pylint: disable=import-outside-toplevel
  mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=8,
                                         refine_landmarks=False, min_detection_confidence=0.5)

  def run(pixels: np.ndarray) -> list[np.ndarray]:
    h, w = pixels.shape[:2]
    result = mesh.process(pixels)
    out = []
    for face in result.multi_face_landmarks or ():
      pts = np.array([(p.x * w - 0.5, p.y * h - 0.5) for p in face.landmark], np.float64)
      named = np.full((len(faces.LANDMARKS), 2), np.nan)
      for k, name in enumerate(faces.LANDMARKS):
        if name in MESH:
          named[k] = pts[list(MESH[name])].mean(0)
      out.append(named)
    return out
  return run


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """`[2, 3]` least-squares similarity of src onto dst (NumPy only, for the JAX-free probe)."""
  mu_s, mu_d = src.mean(0), dst.mean(0)
  zs = (src - mu_s) @ np.array([1, 1j])
  zd = (dst - mu_d) @ np.array([1, 1j])
  a = np.vdot(zs, zd) / np.vdot(zs, zs).real
  m = np.array([[a.real, -a.imag], [a.imag, a.real]])
  return np.concatenate([m, (mu_d - m @ mu_s)[:, None]], axis=1)


def to_uint8(image: np.ndarray, size: int) -> np.ndarray:
  pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
  if pixels.shape[0] < size:
    pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC))
  return pixels


def generated(run, size: int, num: int, seed: int, bank: int, upsample_to: int) -> dict:
  """Detection rate and landmark errors on `num` generated faces rendered at `size`²."""
  found, extra, errors, iod, align_err, times = 0, 0, [], [], [], []
  template = None
  params = [faces.sample_face(s) for s in range(seed, seed + num)]
  truths = [faces.render(p, size) for p in params]
  # The frame: the mean of the known landmarks, in the bank's pixels.
  known_all = np.stack([(t.landmarks + 0.5) * (bank / size) - 0.5 for t in truths])
  template = known_all.mean(0)
  use = [faces.LANDMARKS.index(n) for n in ("left_eye", "right_eye", "nose_tip",
                                             "mouth_left", "mouth_right")]
  read = [faces.LANDMARKS.index(n) for n in ALIGNED]
  for truth, known in zip(truths, known_all):
    big = max(size, upsample_to)
    pixels = to_uint8(truth.image, big)
    t0 = time.perf_counter()
    dets = run(pixels)
    times.append(time.perf_counter() - t0)
    if not dets:
      continue
    found += 1
    extra += len(dets) - 1
    # The detection nearest the true eyes (a generated face has exactly one face).
    dets = [(d + 0.5) * (bank / big) - 0.5 for d in dets]
    det = min(dets, key=lambda d: np.nanmean(np.abs(d[:2] - known[:2])))
    errors.append(np.linalg.norm(det - known, axis=1))
    iod.append(np.linalg.norm(known[1] - known[0]))
    # Alignment: the known landmarks mapped by the detected fit vs by the known fit.
    m_det, m_known = similarity(det[use], template[use]), similarity(known[use], template[use])
    homog = np.concatenate([known[read], np.ones((len(read), 1))], axis=1)
    align_err.append(np.linalg.norm(homog @ m_det.T - homog @ m_known.T, axis=1).mean())
  errors = np.array(errors)
  per_landmark = {}
  for k, name in enumerate(faces.LANDMARKS):
    e = errors[:, k] if len(errors) else np.array([np.nan])
    if np.all(np.isnan(e)):
      continue
    per_landmark[name] = dict(mean_px=float(np.mean(e)), median_px=float(np.median(e)),
                              p90_px=float(np.percentile(e, 90)),
                              mean_over_eye_distance=float(np.mean(e / np.array(iod))))
  return dict(size=size, detected=found, total=num, rate=found / num, extra_detections=extra,
              landmarks=per_landmark,
              alignment_error_px=dict(mean=float(np.mean(align_err)),
                                      median=float(np.median(align_err)),
                                      p90=float(np.percentile(align_err, 90))),
              seconds_per_image=float(np.median(times)))


def photos(run) -> dict:
  try:
    from skimage import data  # pylint: disable=import-outside-toplevel
  except ImportError:
    return {}
  out = {}
  for name, expected in PHOTOS.items():
    try:
      image = getattr(data, name)()
    except Exception:  # pylint: disable=broad-except  # not bundled in this version: skipped
      continue
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
    t0 = time.perf_counter()
    found = len(run(image))
    out[name] = dict(faces=found, expected=expected, seconds=time.perf_counter() - t0,
                     shape=list(image.shape[:2]))
  return out


def main(argv):
  del argv
  run = dlib_backend() if _DETECTOR.value == "dlib" else mediapipe_backend()
  record = dict(detector=_DETECTOR.value, bank_size=_BANK_SIZE.value,
                threshold=_THRESHOLD.value, upsample_to=_UPSAMPLE_TO.value, generated=[], photos={})
  for size in (int(s) for s in _SIZES.value):
    r = generated(run, size, _NUM_FACES.value, _SEED.value, _BANK_SIZE.value,
                  _UPSAMPLE_TO.value)
    record["generated"].append(r)
    lm = "  ".join(f"{n} {v['mean_px']:.2f}" for n, v in r["landmarks"].items())
    print(f"{size}²: found {r['detected']}/{r['total']}, {r['extra_detections']} extra; "
          f"alignment error {r['alignment_error_px']['mean']:.2f} px (median "
          f"{r['alignment_error_px']['median']:.2f}, p90 {r['alignment_error_px']['p90']:.2f}) "
          f"at {_BANK_SIZE.value}²; {1000 * r['seconds_per_image']:.0f} ms/image\n  {lm}",
          flush=True)
  record["photos"] = photos(run)
  for name, r in record["photos"].items():
    print(f"{name} {r['shape']}: {r['faces']} faces (expected {r['expected']}), "
          f"{1000 * r['seconds']:.0f} ms")
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(record, f, indent=1)


if __name__ == "__main__":
  app.run(main)
