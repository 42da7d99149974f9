"""High-resolution editing (paper Fig. 4, the official demo2), on generated faces.

For one test face at `size`² (up to 1024²): candidates are bank faces with and without the
attribute, ranked by Hamming distance of the other attributes (as demo2's attribute L1), the
first `rerank` re-ranked by how well a similarity transform maps their landmarks onto the test
face's; the best K of each set are warped into the test face's frame. Their φ means are
accumulated one image at a time (memory does not grow with K), w = mean φ(target) − mean
φ(source) with `none` scaling and demo2's δ = 3.5 (configurable), and the reverse map runs on
the whole image. The result is blended into the input through a feathered mask around the
landmarks' hull and colour-matched per channel to the input inside it, as the official code
does. With real photos the landmarks would come from a file or a detector; the generator
provides them here.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from dfi_jax.dfi import align
from dfi_jax.dfi import attribute_vector
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.runs import kit
from dfi_jax.data import faces
from dfi_jax.outputs import figures
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.dfi import pipeline
from dfi_jax.eval import metrics as metrics_lib
from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from dfi_jax.outputs import record as run_record
from dfi_jax.data import sources


def colour_match(result: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Per-channel mean/std of `result` inside `mask` (weights) matched to `reference`'s."""
  w = mask[..., None] / max(mask.sum(), 1e-6)
  mu_r, mu_x = (result * w).sum((0, 1)), (reference * w).sum((0, 1))
  sd_r = np.sqrt(((result - mu_r) ** 2 * w).sum((0, 1))) + 1e-6
  sd_x = np.sqrt(((reference - mu_x) ** 2 * w).sum((0, 1)))
  return np.clip((result - mu_r) / sd_r * sd_x + mu_x, 0.0, 1.0).astype(np.float32)


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


CANDIDATE_BYTES = 3500  # one candidate's faces.FaceParams in memory (measured: 3.45 kB)
RULES = dict(rerank=run_state.integer(1))  # the field highres.py adds to synthetic.py's


def _pools(config, candidates, attribute: str, query) -> list[list]:
  """Bank faces without and with `attribute`, nearest in the other attributes first
  (`neighbours.hamming_order`), the first `config.rerank` of each."""
  col = faces.ATTRIBUTES.index(attribute)
  attributes = np.asarray([c.attributes for c in candidates], bool)
  others = np.arange(len(faces.ATTRIBUTES)) != col
  query = np.asarray(query, bool)
  return [[candidates[i] for i in neighbours_lib.hamming_order(
      attributes, query, attributes[:, col] == has, others)[:config.rerank]]
          for has in (False, True)]  # source, then target


def validate(config, candidates) -> None:
  """Every setting, and enough candidates for K, before anything is written."""
  if config.get("bank_dir", ""):
    raise run_state.RunError(
        f"--config.bank_dir={config.bank_dir}: high-resolution edits average φ of neighbours "
        "warped onto each test face, which a bank of unwarped φ cannot give; leave it empty "
        "(the candidates are generated and their φ computed one at a time)")
  kit.validate(config)
  kit.check_inputs(config)
  run_state.check_config(config, RULES)
  unknown = [a for a in config.attributes if a not in faces.ATTRIBUTES]
  if unknown:
    raise run_state.RunError(f"--config.attributes: unknown {unknown}; expected names among "
                             f"{faces.ATTRIBUTES}")
  for params in sources.test_face_params(config):
    for attribute in config.attributes:
      for pool in _pools(config, candidates, attribute, np.asarray(params.attributes)):
        if len(pool) < config.k:
          raise run_state.RunError(
              f"--config.k={config.k} but only {len(pool)} candidates for {attribute}; raise "
              "--config.rerank or --config.bank_size")


def run(config, workdir: str | Path) -> dict:
  """Edits `config.num_test` held-out faces at `config.image_size` for each attribute.

  Every setting is checked before the workdir is touched; finished edits are kept under
  `state/`, so a rerun of the same command resumes (run_state).
  """
  t_start = time.perf_counter()
  config = run_state.split_lists(config)
  kit.validate(config)  # bank_size checked before the candidates are drawn
  need, have = config.bank_size * CANDIDATE_BYTES, os.sysconf("SC_PAGE_SIZE") * os.sysconf(
      "SC_PHYS_PAGES")
  if need > have:
    raise run_state.RunError(
        f"--config.bank_size={config.bank_size}: its candidates' parameters alone would need "
        f"{need / 2**30:,.1f} GiB in memory, this machine has {have / 2**30:,.1f} GiB; use "
        "fewer candidates")
  candidates = [faces.sample_face(s) for s in range(config.bank_seed,
                                                    config.bank_seed + config.bank_size)]
  validate(config, candidates)
  with workdir_lock.locked(workdir) as held:
    return _run(config, held, candidates, t_start)


class TestFace(NamedTuple):
  """One test face at the run's size: its parameters, rendering, blend mask and φ."""
  params: faces.FaceParams
  face: faces.Face  # image [S, S, 3], landmarks, attribute masks
  mask: np.ndarray  # [S, S] feathered hull of the landmarks
  phi_x: np.ndarray  # [1, D]


def _run(config, workdir: Path, candidates, t_start: float) -> dict:
  network = kit.load_network(config)
  size = config.image_size
  pipe = pipeline.make(network.net, network.params, size, kit.reverse_map_config(config))
  claim = run_state.claim(workdir, run_state.describe(config.to_dict(), network.sha256, (), ()))
  rows, per_image = [], []
  for params in sources.test_face_params(config):
    face = faces.render(params, size)
    x = face.image
    test = TestFace(params, face, align.hull_mask(face.landmarks, size),
                    np.asarray(pipe.phi(network.params, jnp.asarray(x[None]))))
    row = [x]
    for attribute in config.attributes:
      name = f"face{params.seed}__{attribute}"
      done = run_state.load_state(claim, name, dict(image=(size, size, 3)))
      if done is not None:
        blended = done["image"]
      else:
        blended = _edit(config, pipe, candidates, test, attribute)
        run_state.save_state(claim, name, image=blended)
      image_io.save_png(workdir / f"{name}.png", blended)
      row.append(blended)
      cf = faces.counterfactual(params, attribute, size)
      per_image.append(dict(image=f"face{params.seed}", attribute=attribute, file=f"{name}.png",
                            r=metrics_lib.counterfactual_ratio(blended, x, cf.image,
                                                               face.masks[attribute]),
                            outside=metrics_lib.outside_change(blended, x,
                                                               face.masks[attribute])))
    rows.append(row)
  run_state.commit(claim)
  figures.save_grid(workdir / "grid.png", rows, col_labels=["input"] + list(config.attributes))
  record = run_record.run_record(config, network,
                                 timings=dict(total_s=time.perf_counter() - t_start),
                                 per_image=per_image, peak_rss_mb=peak_rss_mb())
  files_lib.atomic_write_json(workdir / "metrics.json", files_lib.jsonable(record))
  return record


def chosen(config, candidates, test: TestFace, attribute: str) -> list[list]:
  """The K source and the K target candidates of `attribute`'s edit of `test`, each as
  `(candidate, [2, 3] similarity onto the test face)`: the `rerank` nearest in the other
  attributes (`_pools`), re-ranked by how well their landmarks fit the face's (ties by seed)."""
  size = config.image_size
  sets = []
  for pool in _pools(config, candidates, attribute, np.asarray(test.params.attributes)):
    fits = []
    for c in pool:
      # Landmarks don't depend on size: render at 64² for the fit, scale up.
      lm = faces.render(c, 64).landmarks * (size / 64.0)
      fits.append(align.similarity_fit(lm, test.face.landmarks))
    best = neighbours_lib.first_k(np.asarray([r for _, r in fits]), config.k,
                                  ties=[c.seed for c in pool])
    sets.append([(pool[i], fits[i][0]) for i in best])
  return sets


def mean_phi(pipe: pipeline.Pipeline, warped: list, size: int) -> np.ndarray:
  """`[D]` float64 mean φ of `(candidate, matrix)` pairs, each warped onto the face, summed one
  image at a time (memory does not grow with K)."""
  total = None
  for c, matrix in warped:
    image = align.warp(faces.render(c, size).image, matrix, size)
    phi = np.asarray(pipe.phi(pipe.params, jnp.asarray(image[None])))[0].astype(np.float64)
    total = phi if total is None else total + phi
  return total / len(warped)


def direction(config, pipe: pipeline.Pipeline, candidates, test: TestFace, attribute: str
              ) -> np.ndarray:
  """`[1, D]` float32 unscaled w of the edit: mean φ(warped targets) − mean φ(warped
  sources)."""
  source, target = (mean_phi(pipe, s, config.image_size)
                    for s in chosen(config, candidates, test, attribute))
  return attribute_vector.difference(source, target)[None].astype(np.float32)


def _edit(config, pipe: pipeline.Pipeline, candidates, test: TestFace, attribute: str):
  """One attribute's edit of one face: `[size, size, 3]` float32, blended into the input."""
  x, mask = test.face.image, test.mask
  result = pipeline.edit(
      pipe, x[None], lambda _: [direction(config, pipe, candidates, test, attribute)],
      config.deltas[:1], [config.iterations], scaling=config.scaling, batch_size=1,
      phi_x=test.phi_x).edits
  if not result.finite[0, 0]:
    raise ValueError(f"face{test.params.seed} / {attribute}: loss became non-finite; "
                     "no image written")
  edited = colour_match(result.images[0, 0], x, mask)
  return (x + mask[..., None] * (edited - x)).astype(np.float32)
