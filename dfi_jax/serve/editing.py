"""The page's only door into DFI: every call into `dfi_jax.runs.api` (`load_editor`, `edit`) is
here, so the page follows the API as it changes.

Newer APIs take a `progress(stage, done, total)` callback (raising from it cancels the edit);
this module detects the parameter (`inspect.signature`) and, with an API without it, reports
coarse stages only (finding faces, solving, pasting) and can cancel only between them.
"""

from __future__ import annotations

import inspect
from typing import Callable, NamedTuple, Sequence

import ml_collections
import numpy as np

from dfi_jax.base import run_state
from dfi_jax.data import landmarks as landmarks_lib
from dfi_jax.dfi import pipeline as pipeline_lib
from dfi_jax.runs import api
from dfi_jax.runs import kit

# progress(stage, done, total): done/total are 0/0 when the stage has no count.
Progress = Callable[[str, int, int], None]
WHOLE = "whole"  # `target`: fit the whole photo into the bank's square (no face detection)
ALL = "all"  # `target`: every face found
COMBINE = "+"  # "older+eyeglasses": one combined edit (the API's name for it)


class Settings(NamedTuple):
  """What the page's "advanced" fold sets; the defaults are the config's."""
  delta: float
  k: int
  tv_weight: float  # λ
  iterations: int


def _takes(function: Callable, name: str) -> bool:
  return name in inspect.signature(function).parameters


def load(config: ml_collections.ConfigDict, progress: Progress) -> api.Editor:
  """`api.load_editor(config)`, reporting progress where the API can."""
  if _takes(api.load_editor, "progress"):
    return api.load_editor(config, progress=_forward(progress))
  progress("loading the features, the bank and its φ", 0, 0)
  return api.load_editor(config)


def load_detector() -> landmarks_lib.Detector | None:
  """dlib's detector (the `photos` extra), or None where it is not installed."""
  try:
    landmarks_lib.check_installed()
  except landmarks_lib.MissingDetector:
    return None
  return landmarks_lib.load_detector()


def find_faces(detector: landmarks_lib.Detector | None, image: np.ndarray,
               threshold: float) -> list[list[float]]:
  """Boxes `[left, top, right, bottom]` (pixels) of the faces in `image` (`[H, W, 3]` float32),
  the largest first: the faces `api.edit` edits, in its order."""
  if detector is None:
    return []
  return [[float(v) for v in f.box] for f in landmarks_lib.detect(detector, image, threshold)]


def defaults(config: ml_collections.ConfigDict) -> Settings:
  return Settings(float(config.deltas[0]), int(config.k), float(config.tv_weight),
                  int(config.iterations))


def attribute_names(editor: api.Editor) -> list[str]:
  return [e.name for e in editor.bank.edits]


# The API's stage names (api.Progress) as the page words them; others are shown as they come.
STAGES = {"loading": "loading the network and the bank", "faces": "finding the faces",
          "neighbours": "φ of the bank neighbours", "reverse map": "reverse map (iterations)"}


def _forward(progress: Progress) -> Callable:
  """The API's callback (stage, done, total, …) as ours; whatever it passes beyond is ignored."""
  def callback(stage, done=0, total=0, *unused, **unused_kw):
    progress(STAGES.get(str(stage), str(stage)), int(done or 0), int(total or 0))
  return callback


def _with_settings(editor: api.Editor, settings: Settings, target: str | int) -> api.Editor:
  """`editor` with the page's K, λ and iterations, and without its face frame for `WHOLE` (for
  an API without `whole_image`)."""
  config = ml_collections.ConfigDict(editor.config)
  ratio = config.next_iterations / config.iterations  # warm-started δs: the config's share
  config.k, config.iterations = settings.k, settings.iterations
  config.next_iterations = max(1, round(settings.iterations * ratio))
  pipe = editor.pipeline
  if settings.tv_weight != config.tv_weight:  # λ is compiled into the reverse map (cached)
    config.tv_weight = settings.tv_weight
    pipe = pipeline_lib.make(editor.network.net, editor.network.params, config.image_size,
                             kit.reverse_map_config(config))
  frame = None if target == WHOLE else editor.frame
  return editor._replace(config=config, pipeline=pipe, frame=frame)


def _only_face(image: np.ndarray, edited: np.ndarray, boxes: Sequence[Sequence[float]],
               index: int) -> np.ndarray:
  """`edited` (`[S, H, W, 3]`, every face edited) kept only where face `index`'s box centre is
  the nearest: each face's change is pasted within its own feathered mask, so this is the edit
  of that face alone."""
  if len(boxes) < 2:
    return edited
  h, w = image.shape[:2]
  centres = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes])
  ys, xs = np.mgrid[0:h, 0:w]
  distance = (xs[..., None] - centres[:, 0]) ** 2 + (ys[..., None] - centres[:, 1]) ** 2
  keep = (distance.argmin(-1) == index)[None, ..., None]
  return np.where(keep, edited, image[None])


def solve(editor: api.Editor, image: np.ndarray, attributes: Sequence[str], settings: Settings,
          target: str | int, boxes: Sequence[Sequence[float]], progress: Progress) -> np.ndarray:
  """The photo edited at `settings.delta`: `[1, H, W, 3]` float32 in [0, 1] (one δ a solve, so
  a δ sweep reuses the compiled shapes).

  Args:
    image: `[H, W, 3]` float32 in [0, 1].
    attributes: one name, or several for one combined edit (their directions summed).
    settings: the page's δ, K, λ and iterations.
    target: `ALL`, `WHOLE`, or the index of one face among `boxes` (`find_faces`' order).
    progress: called with each stage; raising from it stops the edit (at the next stage where
      the API reports no progress of its own).

  Raises:
    RunError: no face found, an unknown attribute, a non-finite loss.
  """
  edit = api.edit
  faces_known = _takes(edit, "face") and _takes(edit, "whole_image")  # and "a+b" = combined
  run = _with_settings(editor, settings, WHOLE if target == WHOLE and not faces_known else ALL)
  kwargs = {"progress": _forward(progress)} if _takes(edit, "progress") else {}
  if faces_known and target == WHOLE:
    kwargs["whole_image"] = True
  elif faces_known and isinstance(target, int):
    kwargs["face"] = target
  if len(attributes) > 1 and not faces_known:
    raise run_state.RunError(
        "combined edits (several attributes at once) need a dfi_jax whose edit() can combine "
        "them; pick one attribute")
  if not kwargs.get("progress"):
    progress("solving (this dfi_jax reports no iterations)", 0, 0)
  names = [COMBINE.join(attributes)] if faces_known else list(attributes)
  edited = edit(image, names, deltas=[settings.delta], editor=run, **kwargs)
  result = next(iter(edited.values()))
  progress("pasting the edit into the photo", 1, 1)
  if isinstance(target, int) and "face" not in kwargs:
    result = _only_face(image, result, boxes, target)
  return np.asarray(result, np.float32)
