"""Inpainting with DFI (paper Figs 5-6, the official demo3), on generated faces or a folder.

The hole of a test image is filled with grey (0.5). Its K nearest bank images (squared L2 in
φ between the masked test image and the *masked* bank images) give the source set (those
images masked) and the target set (the same images unmasked); w = mean φ(unmasked) − mean
φ(masked), the target is φ(x_masked) + δ·w (official δ = 2.8 with mean-square scaling), and the
reverse map starts from x_masked. Only the hole is replaced in the output.

Data (`config.data`):
  synthetic  held-out generated faces against a bank of generated faces.
  images     a folder of images, no labels needed (UT-Zappos50K shoes, your own): every
             JPEG/PNG/... under `config.bank_dir`, in sorted path order, fitted into the
             working square (`fit`: "pad" with the image's border colour, which keeps a
             catalogue photo's white background white; "crop" the centre; "stretch"). The
             test images are the first `num_test` under `config.test_dir` (keep them out of
             `bank_dir`, or each is its own nearest neighbour), or else `num_test` images
             spread evenly through the listing and held out of the bank.
             `procedural_shoes > 0` with no `bank_dir` first draws that many shoes
             (`dfi_jax.data.shoes`) into `workdir/procedural_shoes/`.
Test images are complete, so the true hole content is known and the RMSE inside the hole is
reported for DFI, the grey fill and the neighbour-mean fill.

The bank is streamed: masked φ in batches with a running top-K per test image, then φ of only
the neighbours; neither the folder's pixels nor its φ are held whole. Resuming: `run.json`
fingerprints the settings, the weights and the bank listing; the neighbours and each finished
reverse map are kept under `state/`, so a rerun skips what is done (and, when everything is,
all φ).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from dfi_jax.outputs import record as run_record
from dfi_jax.outputs import figures
from dfi_jax.data import fitting
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.dfi import attribute_vector
from dfi_jax.dfi import bank as bank_lib
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.dfi import pipeline
from dfi_jax.runs import kit
from dfi_jax.runs.inpaint_data import (
    DATA, Data, apply_hole, centre_square, folder_data, hole_error, load_hole, synthetic_data)


NEIGHBOURS_STATE = "neighbours"


# --- neighbours and attribute vectors, streamed over the bank --------------------------------


def _phi(phi, params, images: np.ndarray, batch: int) -> np.ndarray:
  """φ of `[n <= batch, S, S, 3]` padded to `batch` (one compiled shape) -> `[n, D]`."""
  n = len(images)
  padded = np.concatenate([images, np.repeat(images[-1:], batch - n, axis=0)]) \
      if n < batch else images
  return np.asarray(phi(params, jnp.asarray(padded, jnp.float32)))[:n]


class Masked(NamedTuple):
  """What the streamed steps read: φ (`features.make_phi`) and its parameters, the bank's
  `[N, S, S, 3]` images (an array or `LazyImages`), the `[S, S]` bool hole, the batch size."""
  phi: Callable
  params: dict
  bank: object
  hole: np.ndarray
  batch: int


def nearest_masked(masked: Masked, phi_x: np.ndarray, k: int, progress=None) -> np.ndarray:
  """`[B, k]` int32: for each `[B, D]` query, the bank images whose *masked* φ is nearest
  (`neighbours.streamed`: squared L2, ties by index), the bank read a batch at a time."""

  def batches():
    for start in range(0, len(masked.bank), masked.batch):
      images = apply_hole(masked.bank[start:start + masked.batch], masked.hole)
      f = _phi(masked.phi, masked.params, images, masked.batch)
      yield f
      if progress is not None:
        progress(len(f))

  return neighbours_lib.streamed(phi_x, batches(), k)


class NeighbourMeans(NamedTuple):
  phi_unmasked: np.ndarray  # [B, D] mean φ of each query's neighbours
  phi_masked: np.ndarray  # [B, D] the same images with the hole
  pixels: np.ndarray  # [B, S, S, 3] their mean image


def neighbour_means(masked: Masked, neighbours: np.ndarray, with_phi: bool = True,
                    progress=None) -> NeighbourMeans:
  """Means over each row of `[B, K]` `neighbours`, reading each used bank image once."""
  used = np.unique(neighbours)
  b = len(neighbours)
  weights = attribute_vector.mean_weights(neighbours, used)  # [B, U]
  pixels = phi_un = phi_m = None
  batch = masked.batch
  for start in range(0, len(used), batch):
    images = masked.bank[used[start:start + batch]]
    w = weights[:, start:start + batch]
    flat = w @ images.reshape(len(images), -1).astype(np.float64)
    pixels = flat if pixels is None else pixels + flat
    if with_phi:
      un = w @ _phi(masked.phi, masked.params, images, batch).astype(np.float64)
      m = w @ _phi(masked.phi, masked.params, apply_hole(images, masked.hole), batch
                   ).astype(np.float64)
      phi_un = un if phi_un is None else phi_un + un
      phi_m = m if phi_m is None else phi_m + m
    if progress is not None:
      progress(len(images))
  as32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
  return NeighbourMeans(as32(phi_un), as32(phi_m),
                        pixels.reshape((b,) + masked.hole.shape + (3,)).astype(np.float32))


# --- the run ---------------------------------------------------------------------------------


# The fields inpaint.py adds to synthetic.py's (kit.RULES checks those).
RULES = dict(
    data=run_state.choice(DATA),
    deltas=run_state.Rule(lambda v: run_state.numbers().ok(v) and len(v) == 1,
                          "one finite number: inpainting takes one δ (official 2.8)"),
    hole_fraction=run_state.Rule(lambda v: run_state.number().ok(v) and 0 < v < 1,
                                 "a number in (0, 1)"),
    hole_mask=run_state.text(), grid_scale=run_state.integer(1), bank_dir=run_state.text(),
    test_dir=run_state.text(), fit=run_state.choice(fitting.FITS),
    procedural_shoes=run_state.integer(0), procedural_width=run_state.integer(1))


def validate(config) -> None:
  """Every setting and input, before anything is written; `config` is read, never changed."""
  config = run_state.split_lists(config)
  run_state.check_config(config, RULES)
  # The edit run's checks, except `data`: "images" needs no attribute bank.
  checked = config.copy_and_resolve_references()
  checked.data = "synthetic"
  kit.validate(checked)
  kit.check_inputs(config)
  if config.hole_mask:
    files_lib.check_input_file(config.hole_mask, f"--config.hole_mask={config.hole_mask}")
  if config.bank_dir and (Path(config.bank_dir).expanduser() / bank_lib.MANIFEST).exists():
    raise run_state.RunError(
        f"--config.bank_dir={config.bank_dir} holds a feature bank (experiments.build_bank); "
        "inpainting ranks the bank by φ of the images with the hole, which such a bank does not "
        "store: give the folder of images (read as a stream, never held whole)")


def run(config, workdir: str | Path) -> dict:
  """Inpaints the test images; writes inpainted/*.png, grid.png, index.html, metrics.json.

  Every setting and input is checked before the workdir is touched (run_state's order).
  """
  t_start = time.perf_counter()
  config = run_state.split_lists(config)
  validate(config)
  with workdir_lock.locked(workdir) as held:
    return _run(config, held, t_start)


class Job(NamedTuple):
  """An inpainting run once its workdir is claimed."""
  network: kit.Network
  data: Data
  hole: np.ndarray  # [S, S] bool
  claim: run_state.Claim
  done: dict  # test image name -> its result kept from an earlier run
  pipe: pipeline.Pipeline
  x: np.ndarray  # [B, S, S, 3] the test images with the hole
  todo: list  # indices of the test images still to inpaint


def _prepare(config, workdir: Path) -> Job:
  """The network, the hole, the data, the claimed workdir and what an earlier run finished."""
  network = kit.load_network(config)
  size = config.image_size
  inputs = [config.hole_mask] if config.hole_mask else []
  inputs_sha256 = [run_state.file_sha256(p) for p in inputs]  # the bytes load_hole reads
  hole = load_hole(config.hole_mask, size) if config.hole_mask else \
      centre_square(size, config.hole_fraction)
  run_state.check_unchanged(inputs, inputs_sha256, "--config.hole_mask")
  data = folder_data(config, workdir) if config.data == "images" else synthetic_data(config)
  print(f"weights: {network.path} — {network.provenance['description']}", flush=True)
  print(f"data: {data.note}; {len(data.bank_names)} bank images, {len(data.test_names)} test "
        f"images, hole of {int(hole.sum())} pixels", flush=True)
  # grid_scale only draws the grid: a rerun with another one redraws it without recomputing.
  settings = {k: v for k, v in config.to_dict().items() if k != "grid_scale"}
  claim = run_state.claim(workdir, run_state.describe(
      dict(config=settings, data=data.fingerprint), network.sha256, inputs, (), inputs_sha256))
  done = {n: run_state.load_result(claim, n, size) for n in data.test_names}
  done = {n: r for n, r in done.items() if r is not None}
  if claim.resuming:
    print(f"resuming the run in {workdir}: {len(done)} of {len(data.test_names)} finished",
          flush=True)
  pipe = pipeline.make(network.net, network.params, size, kit.reverse_map_config(config))
  todo = [i for i, n in enumerate(data.test_names) if n not in done]
  return Job(network, data, hole, claim, done, pipe, apply_hole(data.truth, hole), todo)


def _neighbours(config, job: Job) -> tuple[np.ndarray, NeighbourMeans, np.ndarray | None]:
  """Each test image's K neighbours by masked φ (kept in the run state), their means, and φ of
  the test images (None when nothing is left to inpaint)."""
  masked = Masked(job.pipe.phi, job.network.params, job.data.bank, job.hole,
                  config.feature_batch)
  nb = run_state.load_state(job.claim, NEIGHBOURS_STATE,
                            dict(neighbours=(len(job.x), config.k)))
  nb = None if nb is None else nb["neighbours"]
  phi_x = features_lib.compute_features(job.pipe.phi, job.network.params, job.x,
                                        config.feature_batch) \
      if job.todo or nb is None else None
  if nb is None:
    with tqdm(total=len(job.data.bank), desc="bank φ (masked)", unit="img") as bar:
      nb = nearest_masked(masked, phi_x, config.k, bar.update)
    run_state.save_state(job.claim, NEIGHBOURS_STATE, neighbours=nb)
  with tqdm(total=len(np.unique(nb)), desc="neighbours φ", unit="img") as bar:
    means = neighbour_means(masked, nb, with_phi=bool(job.todo), progress=bar.update)
  return nb, means, phi_x


def _inpaint(config, workdir: Path, job: Job, phi_x: np.ndarray | None,
             means: NeighbourMeans) -> np.ndarray:
  """`[B, S, S, 3]` every test image inpainted: kept ones restored, the others reverse-mapped
  and written as each finishes."""
  data, hole = job.data, job.hole
  results = np.zeros_like(job.x)
  for n, r in job.done.items():  # kept from an earlier run: its PNG checked, rewritten if damaged
    results[data.test_names.index(n)] = r["image"]
    files_lib.restore_file(files_lib.make_folder(workdir / "inpainted") / f"{n}.png",
                          image_io.png_bytes(r["image"]))
  if not job.todo:
    return results

  def on_finished(s, i, edits):  # only the hole is replaced: pixels outside are the input's
    del s  # one δ
    results[i] = np.where(hole[..., None], edits.images[0, i], data.truth[i])
    files_lib.make_folder(workdir / "inpainted")
    image_io.save_png(workdir / "inpainted" / f"{data.test_names[i]}.png", results[i])
    run_state.save_result(job.claim, data.test_names[i], results[i], edits.loss[0, i],
                          edits.evaluations[0, i])

  # Source = the nearest images masked, target = the same images unmasked.
  w = attribute_vector.difference(means.phi_masked, means.phi_unmasked)
  with tqdm(total=config.iterations * len(job.todo), desc="reverse map", unit="it·img") as bar:
    edited = pipeline.edit(
        job.pipe, job.x, lambda _: [w], config.deltas,
        [config.iterations], scaling=config.scaling, batch_size=config.batch_size,
        phi_x=phi_x, rows=job.todo, on_finished=on_finished, progress=bar.update)
  failed = [data.test_names[i] for i in job.todo if not edited.edits.finite[0, i]]
  if failed:
    raise ValueError(f"inpainting {failed}: loss became non-finite; no image written for "
                     "them (the others are kept)")
  return results


def _run(config, workdir: Path, t_start: float) -> dict:
  timings = {}
  job = _prepare(config, workdir)
  t0 = time.perf_counter()
  nb, means, phi_x = _neighbours(config, job)
  timings["bank_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  results = _inpaint(config, workdir, job, phi_x, means)
  timings["reverse_map_s"] = time.perf_counter() - t0
  timings["reverse_maps_run"] = len(job.todo)
  run_state.commit(job.claim)
  shown = Inpainted(job.data, job.hole, job.x, results, means.pixels, nb)
  return write_outputs(config, workdir, job.network, shown, timings, t_start)


class Inpainted(NamedTuple):
  """What the outputs show, per test image."""
  data: Data
  hole: np.ndarray  # [S, S] bool
  x: np.ndarray  # [B, S, S, 3] the input with the hole
  results: np.ndarray  # [B, S, S, 3] inpainted
  neighbour_pixels: np.ndarray  # [B, S, S, 3] the neighbours' mean image
  neighbours: np.ndarray  # [B, K] bank indices


def write_outputs(config, workdir: Path, network: kit.Network, shown: Inpainted, timings: dict,
                  t_start: float) -> dict:
  """grid.png, index.html and metrics.json (returned) of an inpainting run."""
  data, hole, x, results = shown.data, shown.hole, shown.x, shown.results
  neighbour_mean = np.where(hole[..., None], shown.neighbour_pixels, data.truth
                            ).astype(np.float32)
  rows, per_image = [], []
  scale = config.grid_scale  # README pictures: 64² tiles are too small to see on a page
  for i, name in enumerate(data.test_names):
    rows.append([t.repeat(scale, 0).repeat(scale, 1)
                 for t in (x[i], results[i], neighbour_mean[i], data.truth[i])])
    per_image.append(dict(
        image=name, file=f"inpainted/{name}.png",
        rmse_dfi=hole_error(results[i], data.truth[i], hole),
        rmse_grey=hole_error(x[i], data.truth[i], hole),
        rmse_neighbour_mean=hole_error(neighbour_mean[i], data.truth[i], hole),
        neighbours=[data.bank_names[j] for j in shown.neighbours[i][:5]]))
  figures.save_grid(workdir / "grid.png", rows, row_labels=data.test_names,
                    col_labels=["input (hole)", "DFI", "neighbour mean", "truth"])
  summary = {k: float(np.mean([r[k] for r in per_image]))
             for k in ("rmse_dfi", "rmse_grey", "rmse_neighbour_mean")}
  timings["total_s"] = time.perf_counter() - t_start
  record = run_record.run_record(
      config, network, timings=timings,
      data=dict(kind=data.kind, note=data.note, bank_images=len(data.bank_names)),
      hole_pixels=int(hole.sum()), summary=summary, per_image=per_image,
      outputs=dict(grid="grid.png", index="index.html", inpainted=[r["file"] for r in per_image]))
  write_index(workdir, config, network, data, hole, summary, per_image)
  files_lib.atomic_write_json(workdir / "metrics.json", files_lib.jsonable(record))
  return record


def write_index(workdir, config, network, data, hole, summary, per_image) -> None:
  prov = network.provenance
  hole_text = (f"mask {config.hole_mask}" if config.hole_mask else
               f"centre square, {config.hole_fraction:g} of the side")
  fmt = lambda r: [f"{r['rmse_dfi']:.4f}", f"{r['rmse_neighbour_mean']:.4f}",  # noqa: E731
                   f"{r['rmse_grey']:.4f}"]
  sections = [
      dict(heading="Settings", text=(
          f"Data: {data.note} ({len(data.bank_names)} bank images). Hole: {hole_text} "
          f"({int(hole.sum())} pixels at {config.image_size}²). Weights: {prov['description']}. "
          f"K={config.k} nearest by masked φ, scaling {config.scaling}, δ={config.deltas[0]:g}, "
          f"λ={config.tv_weight}, β={config.tv_beta}, {config.iterations} iterations "
          f"({config.solver})."),
           figures=[dict(src="grid.png", caption="rows: test images; columns: input with the "
                         "hole, DFI, the neighbours' mean image in the hole, the true image")]),
      dict(heading="RMSE inside the hole (pixel values in [0, 1])", table=dict(
          columns=["image", "DFI", "neighbour mean", "grey fill"],
          rows=[[r["image"], *fmt(r)] for r in per_image] + [["mean", *fmt(summary)]])),
      dict(heading="Inpainted images", figures=[dict(src=r["file"], caption=r["image"])
                                                 for r in per_image])]
  figures.write_index_html(workdir / "index.html", "DFI inpainting", sections)
