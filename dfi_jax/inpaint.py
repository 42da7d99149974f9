"""Inpainting with DFI (paper Figs 5-6, the official demo3).

The hole of a test image is filled with grey (0.5). Its K nearest bank images (squared L2 in
φ between the masked test image and the *masked* bank images) give the source set (those
images masked) and the target set (the same images unmasked); w = mean φ(unmasked) − mean
φ(masked), the target is φ(x_masked) + δ·w (official δ = 2.8 with mean-square scaling), and the
reverse map starts from x_masked. On generated faces the true image is known, so the error
inside the hole is reported against it (and against the grey fill and a neighbour-mean fill).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from dfi_jax import edit_run
from dfi_jax import features as features_lib
from dfi_jax import image_io
from dfi_jax import interpolate
from dfi_jax import neighbours as neighbours_lib
from dfi_jax import reconstruct
from dfi_jax import sources

GREY = 0.5


def centre_square(size: int, fraction: float) -> np.ndarray:
  """`[size, size]` bool hole: a centred square of side `fraction`·size (demo3: 0.5)."""
  if not 0 < fraction < 1:
    raise ValueError(f"hole fraction must be in (0, 1), got {fraction}")
  side = max(1, int(round(size * fraction)))
  top = (size - side) // 2
  hole = np.zeros((size, size), bool)
  hole[top:top + side, top:top + side] = True
  return hole


def load_hole(path: str, size: int) -> np.ndarray:
  """A user's mask image (white = hole), resized to `size`², as `[size, size]` bool."""
  mask = image_io.resize(image_io.load_image(path), (size, size)).mean(-1) > 0.5
  if not mask.any():
    raise ValueError(f"--config.hole_mask={path}: the mask has no white (hole) pixels")
  return mask


def apply_hole(images: np.ndarray, hole: np.ndarray) -> np.ndarray:
  """`[..., H, W, 3]` with the `[H, W]` hole filled grey."""
  return np.where(hole[..., None], np.float32(GREY), images).astype(np.float32)


def hole_error(result: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
  """Root-mean-square error inside the hole."""
  return float(np.sqrt(np.mean((result - truth)[hole] ** 2)))


def run(config, workdir: str | Path) -> dict:
  """Inpaints `config.num_test` held-out generated faces; writes a grid, PNGs and metrics."""
  t_start = time.perf_counter()
  edit_run.validate(config)
  workdir = Path(workdir)
  (workdir / "inpainted").mkdir(parents=True, exist_ok=True)
  network = edit_run.load_network(config)
  size = config.image_size
  hole = load_hole(config.hole_mask, size) if config.hole_mask else \
      centre_square(size, config.hole_fraction)
  bank_data = sources.load_bank(config)
  if config.k > len(bank_data.images):
    raise ValueError(f"--config.k={config.k} but the bank has {len(bank_data.images)} images")
  phi = features_lib.make_phi(network.net)
  spec = features_lib.feature_spec(network.net, network.params, (size, size))
  with tqdm(total=2 * len(bank_data.images), desc="bank φ", unit="img") as bar:
    bank = features_lib.compute_features(phi, network.params, bank_data.images,
                                         config.feature_batch, progress=bar.update)
    bank_masked = features_lib.compute_features(phi, network.params,
                                                apply_hole(bank_data.images, hole),
                                                config.feature_batch, progress=bar.update)
  tests = sources.synthetic_tests(config, ())
  truth = tests.images
  x = apply_hole(truth, hole)
  phi_x = features_lib.compute_features(phi, network.params, x, config.feature_batch)
  everyone = np.ones(len(bank), bool)
  nb = neighbours_lib.feature_neighbours(bank_masked, phi_x, everyone, everyone, config.k)
  # Source = the nearest images masked, target = the same images unmasked.
  stacked = jnp.concatenate([jnp.asarray(bank_masked), jnp.asarray(bank)])
  pairs = neighbours_lib.Neighbours(nb.source, nb.source + len(bank))
  w = interpolate.scale_vector(interpolate.attribute_vector(stacked, pairs), config.scaling)
  targets = interpolate.edit_targets(jnp.asarray(phi_x), w, config.deltas)[0]
  rm = reconstruct.ReverseMap(network.net, spec, reconstruct.ReverseMapConfig(
      tv_weight=config.tv_weight, tv_beta=config.tv_beta, solver=config.solver,
      linesearch=config.linesearch, linesearch_init=config.linesearch_init, chunk=config.chunk))
  with tqdm(total=config.iterations * len(x), desc="reverse map", unit="it·img") as bar:
    result = rm(network.params, targets, x, config.iterations,
                progress=lambda k: bar.update(k * len(x)))
  bad = [n for n, ok in zip(tests.names, result.finite) if not ok]
  if bad:
    raise ValueError(f"inpainting {bad}: loss became non-finite; no image written")
  # Only the hole is replaced: pixels outside it are the input's.
  filled = np.where(hole[..., None], result.images, truth).astype(np.float32)
  neighbour_mean = np.where(hole[..., None],
                            bank_data.images[np.asarray(nb.source)].mean(1), truth)
  rows, per_image = [], []
  for i, name in enumerate(tests.names):
    image_io.save_png(workdir / "inpainted" / f"{name}.png", filled[i])
    rows.append([x[i], filled[i], neighbour_mean[i], truth[i]])
    per_image.append(dict(image=name, rmse_dfi=hole_error(filled[i], truth[i], hole),
                          rmse_grey=hole_error(x[i], truth[i], hole),
                          rmse_neighbour_mean=hole_error(neighbour_mean[i], truth[i], hole)))
  image_io.save_grid(workdir / "grid.png", rows, row_labels=tests.names,
                     col_labels=["input (hole)", "DFI", "neighbour mean", "truth"])
  summary = {k: float(np.mean([r[k] for r in per_image]))
             for k in ("rmse_dfi", "rmse_grey", "rmse_neighbour_mean")}
  record = dict(settings=config.to_dict(), weights=dict(path=network.path,
                                                        provenance=network.provenance),
                hole_pixels=int(hole.sum()), summary=summary, per_image=per_image,
                timings=dict(total_s=time.perf_counter() - t_start),
                versions=edit_run.package_versions())
  image_io.atomic_write_json(workdir / "metrics.json", edit_run._jsonable(record))
  return record
