"""DFI from Python: edit photos held as arrays, the bank loaded once.

  import dfi_jax
  editor = dfi_jax.load_editor()  # the features, the bank and its φ: once
  edited = dfi_jax.edit(photo, ["eyeglasses", "smiling"], deltas=[1.0, 3.0], editor=editor)
  edited["eyeglasses"]  # [2, H, W, 3] float32: the photo at δ = 1 and 3

The same pipeline as `python -m experiments.transform --inputs=…`: each face found is aligned
to the bank's landmark frame, edited there, and its change pasted back into the full-size photo
(`config.align == "face"`; `"none"` fits the whole photo into the bank's square instead);
neighbours are the K nearest bank images in φ space. Nothing is written to disk.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dfi_jax.runs import edit as edit_run
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib
from dfi_jax.data import fitting
from dfi_jax.data import landmarks as landmarks_lib
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.dfi import pipeline
from dfi_jax.runs import photos as photos_lib
from dfi_jax.runs import report
from dfi_jax.dfi import reconstruct
from dfi_jax import run_state
from dfi_jax.data import banks
from dfi_jax.data import sources
from experiments.configs import synthetic


class Editor(NamedTuple):
  """What `load_editor` prepares once for many `edit` calls."""
  config: ml_collections.ConfigDict
  network: edit_run.Network
  pipeline: pipeline.Pipeline  # φ and the compiled reverse map at the config's image size
  bank: sources.Bank
  bank_phi: jax.Array  # [N, D] φ of every bank image
  frame: photos_lib.Frame | None  # the bank's landmark frame (align == "face")
  detector: landmarks_lib.Detector | None


def default_config(variant: str = "demo") -> ml_collections.ConfigDict:
  """`experiments/configs/synthetic.py`'s settings (`demo`, `tiny`, `eval` or `official`)."""
  return synthetic.get_config(variant)


def load_editor(config: ml_collections.ConfigDict | str | None = None,
                weights: str | None = None) -> Editor:
  """The network, the bank, the bank's φ and (for faces) the detector and the bank's frame.

  Args:
    config: a run config (any of `experiments/configs/`), or a variant name of the default one.
    weights: overrides `config.weights`: '' = ImageNet VGG16 (the default), 'random', or a file.

  Raises:
    RunError: a bad setting (the message names the field).
  """
  config = default_config(config or "demo") if config is None or isinstance(config, str) \
      else ml_collections.ConfigDict(config)
  if weights is not None:
    config.weights = weights
  config = run_state.split_lists(config)
  edit_run.validate(config)
  photos_lib.check(config, ["(array)"])
  network = edit_run.load_network(config)
  bank = banks.load_bank(config)
  pipe = pipeline.make(network.net, network.params, config.image_size,
                       reconstruct.config_for_run(config))
  bank_phi = jnp.asarray(features_lib.compute_features(pipe.phi, network.params, bank.images,
                                                       config.feature_batch))
  frame = detector = None
  if config.align == "face":
    detector = landmarks_lib.load_detector()
    frame = photos_lib.bank_frame(config, bank.images, detector)
  return Editor(config, network, pipe, bank, bank_phi, frame, detector)


def _test_images(editor: Editor, image: np.ndarray) -> sources.TestImages:
  config = editor.config
  if editor.frame is None:
    square, placement = fitting.fit_square(image, config.image_size)
    return sources.TestImages(["image"], square[None], originals=[image],
                              placements=[placement])
  found = photos_lib.find_faces(config, image, editor.detector, "the image")
  photos = photos_lib.Photos(["(array)"], ["image"], [image], [found])
  return photos_lib.photo_tests(config, photos, editor.frame)


def edit(image: np.ndarray, attributes: Sequence[str], deltas: Sequence[float] | None = None,
         *, editor: Editor | None = None, weights: str | None = None) -> dict[str, np.ndarray]:
  """Adds each attribute to the face(s) of `image`.

  Args:
    image: `[H, W, 3]` float in [0, 1], or uint8.
    attributes: names among the bank's edits (generated faces: older, mouth_open, eyes_open,
      smiling, moustache, eyeglasses).
    deltas: edit strengths (default: the config's).
    editor: from `load_editor` (made here when None: slow, loads the bank every call).
    weights: for the editor made here (see `load_editor`).

  Returns:
    attribute -> `[len(deltas), H, W, 3]` float32 in [0, 1]: the photo with every face edited.

  Raises:
    RunError: no face found, or an unknown attribute.
  """
  editor = editor if editor is not None else load_editor(weights=weights)
  config = editor.config
  deltas = [float(d) for d in (config.deltas if deltas is None else deltas)]
  x = np.asarray(image)
  if x.ndim != 3 or x.shape[-1] != 3:
    raise ValueError(f"image has shape {x.shape}; expected [H, W, 3]")
  x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else np.clip(x.astype(np.float32), 0, 1)
  edits = edit_run.select_edits(editor.bank, attributes)
  if not deltas:
    raise run_state.RunError("deltas: expected at least one number")
  tests = _test_images(editor, x)
  masks = neighbours_lib.edit_masks(editor.bank.attributes, edits, editor.bank.attribute_names,
                                    config.k)

  def directions(phi_x):  # φ-space KNN over all of the bank
    found = feature_bank.find_neighbours(config, editor.bank, feature_bank.from_phi(
        editor.bank_phi), tests, edits, masks, phi_x)
    return [feature_bank.attribute_vector(found, e.name) for e in edits]

  iterations = pipeline.iterations_for(deltas, config.iterations, config.next_iterations)
  edited = pipeline.edit(editor.pipeline, tests.images, directions, deltas, iterations,
                         scaling=config.scaling, batch_size=config.batch_size,
                         feature_batch=config.feature_batch)
  failed = ~edited.edits.finite.all(axis=1)
  if failed.any():
    raise run_state.RunError(f"δ={deltas[int(np.argmax(failed))]:g}: the reverse map's loss "
                             "became non-finite")
  faces = len(tests.names)  # items: edit-major, then face
  out = {e.name: [_to_photo(tests, edited.edits.images[s, n * faces:(n + 1) * faces])
                  for s in range(len(deltas))] for n, e in enumerate(edits)}
  return {name: np.stack(images) for name, images in out.items()}


def _to_photo(tests: sources.TestImages, results: np.ndarray) -> np.ndarray:
  """Every test image's result put back into the one photo they came from."""
  if tests.faces is None:
    return report.photo_result(tests, 0, results[0])
  return photos_lib.paste(tests.originals[0], list(tests.images), list(results), tests.faces)
