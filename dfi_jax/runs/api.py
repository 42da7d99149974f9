"""DFI from Python: edit photos held as arrays, with the same edits as the command.

  import dfi_jax
  editor = dfi_jax.load_editor()  # the network and the bank's labels: once
  edited = dfi_jax.edit(photo, "eyeglasses", deltas=[1.0, 3.0], editor=editor)
  edited["eyeglasses"]  # [2, H, W, 3] float32: the photo at δ = 1 and 3

One path with `python -m experiments.transform --inputs=…` (`kit.make_directions`): each
face found is aligned to the bank's landmark frame; on the generated bank the attribute judge
labels it and the official Hamming rule picks its neighbours (`kit.judged_attributes`);
φ is computed only for those neighbours, when first needed, and kept (in the editor and, for
generated faces, in the bank cache on disk, `data/bank_cache.py`); the reverse map is the same
compiled solver, and the change is pasted back into the full-size photo. The same photo and
settings give the same PNG as the command. Nothing is written except the bank cache.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Callable, NamedTuple, Sequence

import ml_collections
import numpy as np
from PIL import Image
from tqdm import tqdm

from dfi_jax.base import run_state
from dfi_jax.data import bank_cache
from dfi_jax.data import banks
from dfi_jax.data import faces
from dfi_jax.data import fitting
from dfi_jax.data import landmarks as landmarks_lib
from dfi_jax.data import sources
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import pipeline
from dfi_jax.dfi import sharding
from dfi_jax.outputs import names as output_names
from dfi_jax.runs import kit
from dfi_jax.runs import photos as photos_lib
from dfi_jax.runs import report
from dfi_jax.runs import run_bank
from dfi_jax.configs import synthetic

RunError = run_state.RunError
# `progress(stage, done, total)`: stage is "loading", "faces", "neighbours" (φ of bank faces
# computed, of those needed) or "reverse map" (iterations × images); raising stops the edit.
Progress = Callable[[str, int, int], None]
Face = landmarks_lib.DetectedFace  # box [4] (left, top, right, bottom), score, points [68, 2]
_WHERE = "load_editor(config=…)"


class Editor(NamedTuple):
  """What `load_editor` prepares once for many `edit` calls."""
  config: ml_collections.ConfigDict
  network: kit.Network
  pipeline: pipeline.Pipeline  # φ and the compiled reverse map at the config's image size
  bank: sources.Bank  # labels; generated images are rendered when read
  features: feature_bank.FeatureBank  # φ of bank rows, computed when first read and kept
  phi_rows: bank_cache.PhiRows | None  # the same φ and what it keeps (None: config.bank_dir)
  frame: photos_lib.Frame | None  # the bank's landmark frame (align == "face")
  detector: landmarks_lib.Detector | None
  reporter: list  # [progress callback of the edit in progress, or None]


def default_config(variant: str = "demo") -> ml_collections.ConfigDict:
  """`dfi_jax/configs/synthetic.py`'s settings (`demo`, `tiny`, `eval` or `official`)."""
  return synthetic.get_config(variant)


def _python_words(message: str) -> str:
  """A setting's message as a Python user reads it: config fields, not flags."""
  text = str(message).replace("--config.", "config.").replace("--attributes", "attributes")
  return text.replace("--inputs=(array)", "the image").replace("--inputs", "the image")


def _config(config) -> ml_collections.ConfigDict:
  if config is None or isinstance(config, str):
    try:
      return default_config(config or "demo")
    except ValueError as e:
      raise ValueError(f"{_WHERE}: {e}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"{_WHERE}: got a {type(config).__name__}; expected an "
                     "ml_collections.ConfigDict (e.g. dfi_jax.default_config() with fields "
                     "changed) or a variant name ('demo', 'tiny', 'eval', 'official')")
  return ml_collections.ConfigDict(config.to_dict())


def _bar_progress() -> Progress:
  """The default progress: one tqdm bar per stage, on stderr."""
  bars: dict[str, tqdm] = {}

  def show(stage: str, done: int, total: int) -> None:
    bar = bars.get(stage)
    if bar is None:
      bar = bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=False)
    bar.total = max(total, 1)
    bar.n = done
    bar.refresh()
    if done >= total:
      bar.close()
      bars.pop(stage)

  return show


def load_editor(config: ml_collections.ConfigDict | str | None = None,
                weights: str | None = None, *, progress: Progress | None = None) -> Editor:
  """The network, the bank's labels, the compiled reverse map and (for faces) the detector and
  the bank's frame: everything `edit` needs, prepared once.

  φ of bank faces is *not* computed here: `edit` computes it for the neighbours it uses, when
  first needed, and keeps it (in the editor, and for generated faces in the on-disk bank cache,
  `~/.cache/dfi_jax/banks` or `$DFI_JAX_CACHE/banks`).

  Time and memory (default config, ImageNet VGG16; measured on a shared 2-core machine at load
  8-14, so a quiet one is faster): 34 s the first time (the labels and landmarks of the 10,000
  bank faces are drawn and cached), 15 s later; peak RSS about 1 GB for this and one edit.

  Args:
    config: a run config (`dfi_jax.default_config()` or any of `experiments/configs/`, an
      `ml_collections.ConfigDict`), or a variant name of the default (`"demo"`, `"tiny"`).
    weights: overrides `config.weights`: '' = ImageNet VGG16 (the default), 'random', or a file.
    progress: `progress(stage, done, total)` (see `Progress`); default: a bar on stderr.

  Returns:
    An `Editor` for `edit` and `find_faces`.

  Raises:
    ValueError (RunError): a bad setting; the message names the field as `config.FIELD`.
  """
  config = _config(config)
  if weights is not None:
    config.weights = weights
  show = progress or _bar_progress()
  steps = 4
  try:
    config = photos_lib.sized(run_state.split_lists(config))
    kit.validate(config)
    photos_lib.check(config, ["(array)"])
    show("loading", 0, steps)
    network = kit.load_network(config)
    show("loading", 1, steps)
    pipe = pipeline.make(network.net, network.params, config.image_size,
                         kit.reverse_map_config(config))
    show("loading", 2, steps)
    reporter: list = [None]
    bank, features, phi_rows = _load_bank(config, network, pipe,
                                          _bank_phi(config, network, pipe, reporter))
    show("loading", 3, steps)
    frame = detector = None
    if config.align == "face":
      detector = landmarks_lib.load_detector()
      frame = photos_lib.bank_frame(config, bank.images, detector)
    show("loading", steps, steps)
  except RunError as e:
    raise RunError(f"{_WHERE}: {_python_words(e)}") from None
  return Editor(config, network, pipe, bank, features, phi_rows, frame, detector, reporter)


def _bank_phi(config: ml_collections.ConfigDict, network: kit.Network, pipe: pipeline.Pipeline,
              reporter: list) -> Callable[[np.ndarray], np.ndarray]:
  """φ of the bank faces an edit needs and has not computed yet (`images [n, S, S, 3] ->
  [n, D]`), reported as stage "neighbours" to the edit in progress (`reporter[0]`)."""

  def bank_phi(images):
    report_to, done = reporter[0], [0]

    def tick(k):
      done[0] += k
      if report_to is not None:
        report_to("neighbours", done[0], len(images))

    return features_lib.compute_features(pipe.phi, network.params, images,
                                         config.feature_batch, progress=tick)

  return bank_phi


def _load_bank(config: ml_collections.ConfigDict, network: kit.Network, pipe: pipeline.Pipeline,
               bank_phi: Callable) -> tuple[sources.Bank, feature_bank.FeatureBank,
                                            bank_cache.PhiRows | None]:
  """(the bank's labels, φ of its rows, what keeps that φ: None for `config.bank_dir`)."""
  if config.get("bank_dir", ""):  # φ precomputed by experiments.build_bank
    bank, features = kit.load_bank(config, network, pipe.spec, bank_phi)
    return bank, features, None
  bank = banks.load_bank(config)  # as feature_bank.load: φ of the rows read, computed and kept
  phi_rows = run_bank.phi_rows(config, network, bank.images, bank_phi, pipe.spec.dim)
  return bank, feature_bank.kept(phi_rows, len(bank.images)), phi_rows


def _photo(image) -> np.ndarray:
  """`image` as `[H, W, 3]` float32 in [0, 1], or a ValueError saying what was expected."""
  if isinstance(image, Image.Image):
    image = np.asarray(image if image.mode in ("RGB", "RGBA") else image.convert("RGBA"))
  x = np.asarray(image)
  if x.dtype == object or x.ndim != 3 or x.shape[-1] not in (3, 4):
    raise ValueError(f"image has shape {x.shape}; expected [H, W, 3] (RGB) or [H, W, 4] "
                     "(RGBA) as a NumPy array or a PIL image")
  if x.shape[0] < 1 or x.shape[1] < 1:
    raise ValueError(f"image is empty (shape {x.shape}); expected H, W >= 1")
  if x.dtype == np.uint8:
    x = x.astype(np.float32) / 255.0
  elif np.issubdtype(x.dtype, np.floating):
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
      raise ValueError("image contains NaN or infinite values; expected floats in [0, 1]")
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
      raise ValueError(f"image is float with values in [{low:g}, {high:g}]; expected [0, 1] "
                       "(divide a 0-255 image by 255, or pass it as uint8)")
  else:
    raise ValueError(f"image has dtype {x.dtype}; expected uint8, or float in [0, 1] (e.g. "
                     f"a 16-bit image divided by 65535)")
  if x.shape[-1] == 4:  # over white, as the command reads an RGBA file (image_io.load_image)
    alpha = x[..., 3:]
    x = x[..., :3] * alpha + (1.0 - alpha)
  return np.ascontiguousarray(x)


def _attributes(attributes) -> list[str]:
  if isinstance(attributes, str):
    attributes = [attributes]
  if not isinstance(attributes, Sequence) or not all(isinstance(a, str) for a in attributes):
    raise ValueError(f"attributes={attributes!r}: expected a name like 'smiling' or a list of "
                     "names (join several with '+' for one combined edit: 'older+eyeglasses')")
  if not attributes:
    raise ValueError("attributes is empty; expected a name like 'smiling' or a list of names")
  if len(set(attributes)) != len(attributes):
    raise ValueError(f"attributes={list(attributes)}: each name may be given once")
  return list(attributes)


def _deltas(deltas, default) -> list[float]:
  if deltas is None:
    return [float(d) for d in default]
  if isinstance(deltas, numbers.Real) and not isinstance(deltas, bool):
    deltas = [deltas]
  if isinstance(deltas, (str, bytes)) or not isinstance(deltas, (Sequence, np.ndarray)):
    raise ValueError(f"deltas={deltas!r}: expected a number (δ, e.g. 3.0) or a list of numbers")
  out = []
  for d in np.ravel(np.asarray(deltas, dtype=object)).tolist():
    if isinstance(d, bool) or not isinstance(d, numbers.Real) or not math.isfinite(d):
      raise ValueError(f"deltas={list(deltas)!r}: expected finite numbers (δ, e.g. 3.0)")
    out.append(float(d))
  if not out:
    raise ValueError("deltas is empty; expected a number (δ, e.g. 3.0) or a list of numbers")
  if len({output_names.delta_tag(d) for d in out}) != len(out):
    raise ValueError(f"deltas={out}: each δ may be given once")
  return out


def _known(attributes: Sequence[str], names: Sequence[str]) -> None:
  unknown = [p for a in attributes for p in a.split(kit.COMBINE) if p not in names]
  if unknown:
    raise ValueError(f"attributes: unknown {unknown}; valid attributes are {list(names)}, "
                     "or several joined by '+' for one combined edit ('older+eyeglasses')")


def find_faces(image, editor: Editor) -> list[Face]:
  """The faces `edit` would edit in `image`, the largest first (dlib's detector, score >=
  `config.face_threshold`); each a `Face` with `box` (left, top, right, bottom pixels), `score`
  and 68 landmarks `points` `[68, 2]`. An empty list when none is found. ~0.2 s for 512².

  Args:
    image: `[H, W, 3]` uint8 or float in [0, 1], `[H, W, 4]` RGBA, or a PIL image.
    editor: from `load_editor`.
  """
  x = _photo(image)
  detector = editor.detector or landmarks_lib.load_detector()
  return landmarks_lib.detect(detector, x, editor.config.face_threshold)


def _tests(editor: Editor, x: np.ndarray, face: int | None,
           whole_image: bool) -> sources.TestImages:
  config = editor.config
  if whole_image or editor.frame is None:
    square, placement = fitting.fit_square(x, config.image_size)
    return sources.TestImages(["image"], square[None], originals=[x], placements=[placement])
  found = landmarks_lib.detect(editor.detector, x, config.face_threshold)
  if not found:
    raise RunError(f"no face found in the image (dlib's frontal face detector, score >= "
                   f"{config.face_threshold:g}); use a photo with a frontal face, lower "
                   f"config.face_threshold in {_WHERE}, or pass whole_image=True to edit the "
                   "whole image")
  if face is not None:
    if not 0 <= face < len(found):
      raise ValueError(f"face={face}: find_faces found {len(found)} face(s); expected an "
                       f"index in [0, {len(found) - 1}]")
    found = [found[face]]
  elif config.faces == "largest":
    found = found[:1]
  photos = photos_lib.Photos(["(array)"], ["image"], [x], [found])
  return photos_lib.photo_tests(config, photos, editor.frame)


def edit(image, attributes: str | Sequence[str], deltas: float | Sequence[float] | None = None,
         *, editor: Editor | None = None, weights: str | None = None, face: int | None = None,
         whole_image: bool = False, progress: Progress | None = None) -> dict[str, np.ndarray]:
  """Adds each attribute to the face(s) of `image`, as `python -m experiments.transform
  --inputs=…` does (the same PNG for the same photo and settings).

  Args:
    image: `[H, W, 3]` uint8 or float in [0, 1], `[H, W, 4]` RGBA (composited over white, as
      the command reads an RGBA file), or a PIL image.
    attributes: one name or a list (generated faces: older, mouth_open, eyes_open, smiling,
      moustache, eyeglasses); `"older+eyeglasses"` is one combined edit (the parts' w summed).
    deltas: the edit strength δ, a number or a list (default: the config's, 3.0).
    editor: from `load_editor` (made here when None: slower, reloads everything each call).
    weights: for the editor made here (see `load_editor`).
    face: edit only this face (an index into `find_faces(image, editor)`); default every face
      (or the largest, `config.faces`).
    whole_image: edit the whole image fitted into the bank's square, without finding a face.
    progress: `progress(stage, done, total)` (see `Progress`); if it raises, the edit stops
      with that exception. Default: a bar on stderr.

  Returns:
    attribute -> `[len(deltas), H, W, 3]` float32 in [0, 1]: the photo with its face(s) edited
    (pixels outside the feathered face mask are the input's).

  Time and memory (default config, 512² photo, one attribute, δ = 3; shared 2-core machine at
  load 8-14): the first edit in a process takes 85-95 s, mostly compiling the reverse map (the
  compiled program is kept in the cache for later runs); a next edit about 20 s. A new
  attribute computes φ of its ~200 bank neighbours once (then cached on disk); each kept row
  is 0.43 MB of RAM (~85 MB per attribute).

  Raises:
    ValueError: a bad image, attribute, δ or face (checked before any heavy work).
    RunError (a ValueError): no face found, or the reverse map failed.
  """
  x = _photo(image)
  names = _attributes(attributes)
  deltas = _deltas(deltas, (editor.config if editor is not None else default_config()).deltas)
  if editor is None:
    if default_config().data == "synthetic":
      _known(names, faces.ATTRIBUTES)
    editor = load_editor(weights=weights, progress=progress)
  _known(names, [e.name for e in editor.bank.edits])
  show = progress or _bar_progress()
  try:
    edits = kit.select_edits(editor.bank, names, "attributes")
    kit.check_combined(editor.config, edits, True)
    tests = _tests(editor, x, face, whole_image)
    show("faces", len(tests.names), len(tests.names))
    if editor.config.neighbours == "attributes":
      tests = kit.judged_attributes(editor.config, tests, editor.bank)
    masks = kit.edit_masks(editor.bank, edits, editor.config.k)
  except RunError as e:
    raise RunError(_python_words(e)) from None
  edited = _edit_faces(editor, tests, edits, masks, deltas, show)
  faces_n = len(tests.names)  # items: edit-major, then face
  return {e.name: np.stack([_to_photo(tests, edited[s, n * faces_n:(n + 1) * faces_n])
                            for s in range(len(deltas))]) for n, e in enumerate(edits)}


def _edit_faces(editor: Editor, tests: sources.TestImages, edits: Sequence, masks,
                deltas: Sequence[float], show: Progress) -> np.ndarray:
  """The DFI edits of `tests` (`pipeline.plan`, then its reverse maps on this machine's devices),
  `[S, N·B, s, s, 3]` float32: δ-major, then edit, then face; a non-finite reverse map raises."""
  config = editor.config
  directions, found = kit.make_directions(config, editor.bank, editor.features, tests, edits,
                                          masks)
  iterations = pipeline.iterations_for(deltas, config.iterations, config.next_iterations)
  total, done = sum(iterations) * len(edits) * len(tests.names), [0]

  def tick(k):
    done[0] += k
    show("reverse map", done[0], total)

  def neighbours(phi_x):  # the judge's labels were set above; φ of new neighbours reported
    editor.reporter[0] = show
    try:
      return directions(phi_x)
    finally:
      editor.reporter[0] = None

  def solve(targets, z0, n, progress, devices=sharding.local_mesh()):
    return sharding.reverse_maps(editor.pipeline.reverse_map, devices, editor.network.params,
                                 targets, z0, n, progress=progress)

  plan = pipeline.plan(editor.pipeline, tests.images, neighbours, deltas,
                       scaling=config.scaling, feature_batch=config.feature_batch)
  results = pipeline.reverse_maps(solve, plan.targets, plan.x, iterations, config.batch_size,
                                  where=kit.where_masks(plan.where, found),
                                  progress=tick, **kit.item_flags(found))
  failed = ~results.finite.all(axis=1)
  if failed.any():
    raise RunError(f"δ={deltas[int(np.argmax(failed))]:g}: the reverse map's loss became "
                   "non-finite")
  return results.images


def _to_photo(tests: sources.TestImages, results: np.ndarray) -> np.ndarray:
  """Every test image's result put back into the one photo they came from."""
  if tests.faces is None:
    return report.photo_result(tests, 0, results[0])
  return photos_lib.paste(tests.originals[0], list(tests.images), list(results), tests.faces)
