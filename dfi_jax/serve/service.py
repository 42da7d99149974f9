"""What the page can ask of the server, without HTTP: add a photo, queue an edit, follow it.

Everything the server writes lives in one temporary folder (`Service.folder`) under names it
makes itself; nothing the client sends becomes a path. Files are handed out by random tokens.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import threading
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

import ml_collections
import numpy as np
from PIL import Image

from dfi_jax.base import run_state
from dfi_jax.data import image_io
from dfi_jax.data import faces as faces_lib
from dfi_jax.serve import editing
from dfi_jax.serve import jobs

KEEP_PHOTOS = 16  # photos kept in memory; older ones are forgotten
KEEP_FILES = 400  # PNGs kept in the temporary folder; the oldest are removed
MAX_PIXELS = 25_000_000  # a photo's pixels (a 24 MP phone photo fits); its edit holds copies
SWEEP_FRACTIONS = (1 / 3, 2 / 3)  # the animation's δs besides 0 and the chosen δ
SWEEP_SIDE = 768  # the animation's frames are shrunk to at most this side
LIMITS = {"k": (1, 100_000), "iterations": (1, 5_000), "delta": (-50.0, 50.0),
          "tv_weight": (0.0, 10.0)}


class BadRequest(ValueError):
  """Something the page sent that cannot be done; the message is shown on the page."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


class Photo(NamedTuple):
  id: str
  name: str  # shown on the page only
  image: np.ndarray  # [H, W, 3] float32 in [0, 1], upright
  faces: list[list[float]]  # [left, top, right, bottom] per face, the largest first
  url: str


class Service:
  """The app's state: the editor (loaded once, in the background), photos, queue and files."""

  def __init__(self, config: ml_collections.ConfigDict, max_upload_bytes: int,
               sweep: bool = True):
    self.config = config
    self.max_upload_bytes = max_upload_bytes
    self.sweep = sweep
    self.folder = Path(tempfile.mkdtemp(prefix="dfi_serve_"))
    self._lock = threading.Lock()
    self._photos: dict[str, Photo] = {}
    self._files: dict[str, Path] = {}
    self._samples = 0
    self.queue = jobs.Queue()
    self.detector = editing.load_detector()
    self._detecting = threading.Lock()  # one dlib detector is not safe in two threads at once
    self.editor = None
    self.load_stage, self.load_error = "starting", ""
    self._loaded = threading.Event()
    threading.Thread(target=self._load, name="dfi-editor-loader", daemon=True).start()

  def _load(self) -> None:
    def progress(stage, done, total):
      self.load_stage = f"{stage} {done}/{total}" if total else stage
    try:
      self.editor = editing.load(self.config, progress)
      self.load_stage = "ready"
    except Exception as e:  # pylint: disable=broad-except  # shown on the page, one line
      self.load_error = f"loading the editor failed: {type(e).__name__}: {' '.join(str(e).split())}"
      print(self.load_error, file=sys.stderr, flush=True)
    finally:
      self._loaded.set()

  def close(self) -> None:
    """Stops the queue and removes the temporary folder."""
    self.queue.close()
    shutil.rmtree(self.folder, ignore_errors=True)

  def info(self) -> dict:
    d = editing.defaults(self.config)
    names = (editing.attribute_names(self.editor) if self.editor is not None
             else list(self.config.get("attributes", ())))
    return {"attributes": names, "defaults": d._asdict(), "limits": LIMITS,
            "max_upload_bytes": self.max_upload_bytes, "faces": self.detector is not None,
            "loading": "" if self.editor is not None else self.load_stage,
            "load_error": self.load_error, "config": str(self.config.get("variant", ""))}

  # Photos.

  def _file(self, path: Path) -> str:
    token = uuid.uuid4().hex
    with self._lock:
      self._files[token] = path
      while len(self._files) > KEEP_FILES:
        self._files.pop(next(iter(self._files))).unlink(missing_ok=True)
    return f"/files/{token}"

  def file(self, token: str) -> Path | None:
    with self._lock:
      return self._files.get(token)

  def _save_png(self, image: np.ndarray, max_side: int = 0) -> str:
    pixels = Image.fromarray(image_io.to_uint8(image))
    if max_side and max(pixels.size) > max_side:
      pixels.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    path = self.folder / f"{uuid.uuid4().hex}.png"
    pixels.save(path, compress_level=1)
    return self._file(path)

  def _add(self, image: np.ndarray, name: str) -> dict:
    with self._detecting:
      faces = editing.find_faces(self.detector, image, float(self.config.face_threshold))
    photo = Photo(uuid.uuid4().hex[:16], name, image, faces, self._save_png(image))
    with self._lock:
      self._photos[photo.id] = photo
      while len(self._photos) > KEEP_PHOTOS:
        del self._photos[next(iter(self._photos))]
    h, w = image.shape[:2]
    return {"id": photo.id, "name": name, "url": photo.url, "width": w, "height": h,
            "faces": faces, "detector": self.detector is not None}

  def add_upload(self, data: bytes, name: str) -> dict:
    """A photo uploaded as the bytes of its file; `name` is shown, never used as a path."""
    name = "".join(c for c in name if c.isprintable())[:80] or "the upload"
    if len(data) > self.max_upload_bytes:
      raise BadRequest(too_large(len(data), self.max_upload_bytes), 413)
    path = self.folder / f"{uuid.uuid4().hex}.upload"
    path.write_bytes(data)
    try:
      width, height = _header_size(path)
      if MAX_PIXELS < width * height <= (Image.MAX_IMAGE_PIXELS or math.inf):  # above: a bomb
        raise BadRequest(f"{name} is {width}×{height} ({width * height / 1e6:.1f} megapixels), "
                         f"over this page's limit of {MAX_PIXELS / 1e6:g} megapixels; shrink it "
                         "first")
      image = image_io.load_image(path)
    except image_io.ImageError as e:
      raise BadRequest(str(e).replace(str(path), name)) from None
    finally:
      path.unlink(missing_ok=True)
    return self._add(image, name)

  def add_sample(self, which: str) -> dict:
    """The bundled astronaut (scikit-image) or a newly generated face."""
    if which == "astronaut":
      try:
        from skimage import data  # pylint: disable=import-outside-toplevel  # the photos extra
      except ImportError:
        raise BadRequest("the astronaut comes with scikit-image: pip install -e '.[serve]'") \
            from None
      return self._add(image_io.as_float_image(data.astronaut()), "astronaut.png")
    if which == "generated":
      with self._lock:
        self._samples += 1
        seed = int(self.config.get("test_seed", 10_000_000)) + self._samples
      images, _ = faces_lib.generate([seed], 256)
      return self._add(images[0], f"generated face {seed}")
    raise BadRequest(f"no sample {which!r}; expected astronaut or generated", 404)

  # Edits.

  def _settings(self, request: dict) -> editing.Settings:
    d = editing.defaults(self.config)._asdict()
    for field, (low, high) in LIMITS.items():
      value = request.get(field, d[field])
      kind = int if field in ("k", "iterations") else float
      try:
        number = kind(value)
      except (TypeError, ValueError):
        raise BadRequest(f"{field}: {value!r} is not a number") from None
      if not math.isfinite(number) or not low <= number <= high or number != float(value):
        raise BadRequest(f"{field}: {value!r}; expected a{'n integer' if kind is int else ' number'}"
                         f" in [{low:g}, {high:g}]")
      d[field] = number
    return editing.Settings(**d)

  def submit(self, request: dict) -> jobs.Job:
    """Queues an edit: `{photo, attributes: [..], target: "all" | "whole" | face index, delta,
    k, tv_weight, iterations}` (settings left out take the config's)."""
    with self._lock:
      photo = self._photos.get(str(request.get("photo")))
    if photo is None:
      raise BadRequest("that photo is no longer here (the server keeps the last "
                       f"{KEEP_PHOTOS}); add it again", 404)
    attributes = request.get("attributes")
    if not isinstance(attributes, list) or not attributes or not all(
        isinstance(a, str) for a in attributes):
      raise BadRequest("pick at least one attribute")
    known = self.info()["attributes"]
    unknown = [a for a in attributes if a not in known]
    if unknown:
      raise BadRequest(f"the bank has no attribute {', '.join(map(repr, unknown))}; it has "
                       f"{', '.join(known)}")
    target = request.get("target", editing.ALL)
    if target not in (editing.ALL, editing.WHOLE) and not (
        isinstance(target, int) and 0 <= target < len(photo.faces)):
      raise BadRequest(f"target: {target!r}; expected all, whole or a face number")
    if target != editing.WHOLE and not photo.faces:
      raise BadRequest("no face found in this photo; edit the whole image instead")
    settings = self._settings(request)
    return self.queue.submit(photo.id, lambda job: self._run(job, photo, attributes, target,
                                                             settings),
                             (ValueError,))

  def _run(self, job: jobs.Job, photo: Photo, attributes, target, settings) -> None:
    while not self._loaded.wait(0.2):
      job.report(f"loading the editor: {self.load_stage}")
    if self.editor is None:
      raise run_state.RunError(self.load_error)
    delta = settings.delta
    result = editing.solve(self.editor, photo.image, attributes, settings, target, photo.faces,
                           job.report)[0]
    label = "+".join(attributes)
    job.outputs.update(result=self._save_png(result),
                       download=f"{Path(photo.name).stem or 'photo'}_{label}_d{delta:g}.png")
    if not self.sweep:
      return
    deltas = [f * delta for f in SWEEP_FRACTIONS]
    frames = []
    for n, d in enumerate(deltas):  # one δ per solve: the result's compiled shapes, no new compile
      prefix = f"the δ sweep, δ = {d:.3g} ({n + 1} of {len(deltas)})"
      frames += list(editing.solve(
          self.editor, photo.image, attributes, settings._replace(delta=d), target,
          photo.faces, lambda stage, done=0, total=0: job.report(f"{prefix}: {stage}", done, total)))
    job.outputs["sweep"] = [{"delta": d, "url": self._save_png(x, SWEEP_SIDE)} for d, x in
                            zip([0.0, *deltas, delta], [photo.image, *frames, result])]


def _header_size(path: Path) -> tuple[int, int]:
  """The image's size from its header, without decoding it; (0, 0) when Pillow cannot tell
  (`image_io.load_image` then says why)."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      with Image.open(path) as header:
        return header.size
  except Exception:  # pylint: disable=broad-except
    return 0, 0


def too_large(size: int, limit: int) -> str:
  return (f"the file is {size / 1e6:.1f} MB, over this server's upload limit of "
          f"{limit / 1e6:g} MB (serve --max_upload_mb)")
