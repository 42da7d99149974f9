"""The edit run behind `python -m experiments.transform`: prepare → solve → write.

Writes into `workdir`: `grid.png` (rows = test images; columns = original, each attribute's edit
for each δ, and on synthetic data the counterfactuals), `edits/<image>__<attribute>__d<δ>.png`,
`index.html` and `metrics.json`.

`run` reads top to bottom: `prepare` checks, loads the network and the bank, picks the test
images and claims the workdir; `solve` yields each (δ, item) as its reverse map finishes, and
`save` writes its PNG and state at once (a stopped run keeps it); `write` writes the rest.
Items are edit-major: item `j` is test image `j % B` under edit `j // B` (`pipeline`).

The bank (`feature_bank`): built by `experiments.build_bank` (`config.bank_dir`) or in memory,
searched over every device of every host; after `jax.distributed.initialize` each host edits its
share of the items and process 0 writes the outputs (`hosts.hold_workdir`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from dfi_jax.base import run_state
from dfi_jax.data import sources
from dfi_jax.dfi import decoder as decoder_lib
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import pipeline
from dfi_jax.dfi import sharding
from dfi_jax.outputs import names as output_names
from dfi_jax.runs import hosts
from dfi_jax.runs import kit
from dfi_jax.runs import photo_outputs
from dfi_jax.runs import photos as photos_lib
from dfi_jax.runs import report

RunError = kit.RunError


class Job(NamedTuple):
  """What `prepare` hands `solve`, `save` and `write`."""
  config: object  # the run config, lists split
  workdir: Path
  network: kit.Network
  pipe: pipeline.Pipeline
  fast: kit.FastMode | None
  bank_data: sources.Bank
  tests: sources.TestImages
  items: list[tuple[int, str]]  # (test image, edit name), edit-major
  keys: list[list[str]]  # [S][n] each item's name in the run state (`output_names.edit_stem`)
  claim: run_state.Claim
  directions: Callable  # φ(x) [B, D] -> each edit's [B, D] w (`kit.make_directions`)
  found: dict  # "neighbourhood": the neighbours `directions` found
  results: pipeline.Edits  # [S, n]: filled by `solve` (a resumed run's items already done)
  timings: dict[str, float]
  written: set  # the (s, j) whose PNG this run wrote


def run(config, workdir: str | os.PathLike, inputs: Sequence[str] = (),
        attributes: Sequence[str] = ()) -> dict:
  """The whole edit run; returns the metrics record it writes to `metrics.json`.

  Every setting and input is checked before the workdir is touched (run_state's order).
  """
  t_start = time.perf_counter()
  config = run_state.split_lists(config)
  if inputs:  # own photos: the working size that fits a face in a photo
    config = photos_lib.sized(config)
  with hosts.hold_workdir(workdir, check=lambda: kit.check(config, inputs)) as held:
    job = prepare(config, held.path, inputs, attributes)
    held.agree()  # every host got this far (many hosts: see hosts.hold_workdir)
    for s, j in solve(job):
      save(job, s, j)
    return write(job, t_start)


def prepare(config, workdir: Path, inputs: Sequence[str], attributes: Sequence[str]) -> Job:
  """The network, own photos, the bank and its edits, the test images, the claimed workdir and
  what an interrupted run already finished."""
  network = kit.load_network(config)
  pipe = pipeline.make(network.net, network.params, config.image_size,
                       kit.reverse_map_config(config))
  fast = kit.load_fast_mode(config, network, pipe.spec)  # before any long computation
  # Own photos are read first, so a bad file fails before any long computation; hashed before
  # and checked after, so the run records the bytes it edited.
  inputs_sha256 = [run_state.file_sha256(p) for p in inputs]
  photos = photos_lib.load(config, inputs) if inputs else None
  run_state.check_unchanged(inputs, inputs_sha256, "--inputs")
  print(f"weights: {network.path} — {network.provenance['description']}", flush=True)

  t0 = time.perf_counter()  # the bank: images with attributes, and their φ
  bank_data, bank = kit.load_bank(config, network, pipe.spec, bank_phi(config, pipe))
  edits = kit.select_edits(bank_data, attributes or config.attributes)
  kit.check_combined(config, edits, bool(photos))
  masks = kit.edit_masks(bank_data, edits, config.k)
  claim = run_state.claim(workdir, run_state.describe(
      settings_of(config, fast, bank), network.sha256, inputs, edits, inputs_sha256))
  if claim.resuming:
    print(f"resuming the run in {workdir}: finished edits are kept", flush=True)
  tests = test_images(config, photos, bank_data, edits)
  aligned = (aligned_vectors(config, pipe, bank_data)
             if config.get("align_neighbours", False) else None)
  directions, found = kit.make_directions(config, bank_data, bank, tests, edits, masks, aligned)
  items = [(i, e.name) for e in edits for i in range(len(tests.names))]
  keys = item_keys(config.deltas, tests, items)
  return Job(config, workdir, network, pipe, fast, bank_data, tests, items, keys, claim,
             directions, found, kept_results(config, claim, keys),
             dict(bank_s=time.perf_counter() - t0), set())


def bank_phi(config, pipe: pipeline.Pipeline) -> Callable[[np.ndarray], np.ndarray]:
  """`[N, S, S, 3]` bank images -> their `[N, D]` φ, with a progress bar."""
  def phi(images):
    with tqdm(total=len(images), desc="bank φ", unit="img") as bar:
      return features_lib.compute_features(pipe.phi, pipe.params, images, config.feature_batch,
                                           progress=bar.update)
  return phi


def settings_of(config, fast: kit.FastMode | None, bank: feature_bank.FeatureBank) -> dict:
  """The settings a run is claimed under: the config, and the content of the files it names."""
  settings = config.to_dict()
  if fast is not None:  # the file's content, not just its path, decides the results
    settings["decoder_sha256"] = fast.sha256
  if bank.description:  # so does the bank's (its dtype, search reduction)
    settings["bank"] = bank.description
  return settings


def test_images(config, photos, bank_data: sources.Bank, edits) -> sources.TestImages:
  """Own photos (labelled by the judge where the bank has its attributes) or held-out faces."""
  if not photos:
    return sources.load_tests(config, bank_data, edits)
  tests = photos_lib.tests_for(config, photos, bank_data.images)
  if config.neighbours != "attributes":
    return tests
  tests = kit.judged_attributes(config, tests, bank_data)
  for e in edits:
    has = report.already_has(tests, bank_data.attribute_names, e.name)
    if has:
      print(f"note: the judge says {', '.join(has)} already has {e.name}; adding it "
            "changes little", flush=True)
  return tests


def aligned_vectors(config, pipe: pipeline.Pipeline, bank_data: sources.Bank) -> Callable:
  """`(neighbourhood, singles) -> each single edit's w` from neighbours warped onto each test
  face (`config.align_neighbours`)."""
  def aligned(nb, singles):
    vectors = kit.aligned_vectors(config, pipe.phi, pipe.params, bank_data.images,
                                  [nb.sets[e.name] for e in singles])
    return [jnp.asarray(w) for w in vectors.w]
  return aligned


def item_keys(deltas: Sequence[float], tests: sources.TestImages, items) -> list[list[str]]:
  """`[S][n]` each item's name in the run state: `<image>__<attribute>__d<δ>`."""
  keys = [[output_names.edit_stem(tests.names[i], a, d) for i, a in items] for d in deltas]
  run_state.check_unique([k for row in keys for k in row], "edits")
  return keys


def kept_results(config, claim: run_state.Claim, keys: list[list[str]]) -> pipeline.Edits:
  """`[S, n]` results, holding those an earlier, interrupted run finished."""
  size = config.image_size
  kept = pipeline.empty(len(keys), len(keys[0]), (size, size, 3))
  for s, j in np.ndindex(*kept.finite.shape):
    done = run_state.load_result(claim, keys[s][j], size)
    if done is not None:
      kept.images[s, j], kept.loss[s, j] = done["image"], done["loss"]
      kept.evaluations[s, j], kept.finite[s, j] = done["evaluations"], True
  return kept


def solve(job: Job):
  """Yields `(s, j)` as each (δ, item) this host maps finishes with a finite loss
  (`job.results` then holds it): each test image under each edit for each δ, the first δ from
  x, each next one from the previous result."""
  config, pipe = job.config, job.pipe
  plan = pipeline.plan(pipe, job.tests.images, job.directions, config.deltas,
                       scaling=config.scaling, feature_batch=config.feature_batch)
  job.timings["bank_s"] += plan.seconds["directions_s"]
  iterations = pipeline.iterations_for(config.deltas, config.iterations, config.next_iterations)
  mine, devices = sharding.share(len(job.items)), sharding.local_mesh()  # this host's items

  def one_batch(targets, z0, n, progress):  # split over this host's devices
    return sharding.reverse_maps(pipe.reverse_map, devices, pipe.params, targets, z0, n,
                                 progress=progress)

  t0 = time.perf_counter()
  with tqdm(total=sum(iterations) * len(mine), desc="reverse map", unit="it·img") as bar:
    yield from pipeline.finished_items(
        one_batch, plan.targets, plan.x, iterations, config.batch_size, job.results, rows=mine,
        first_start=pipeline.start_from(fast_start(job.fast), plan.phi_x),
        where=kit.where_masks(plan.where, job.found),
        progress=bar.update, **kit.item_flags(job.found))
  job.timings["reverse_map_s"] = time.perf_counter() - t0
  job.timings["reverse_map_per_image_s"] = (job.timings["reverse_map_s"]
                                            / max(1, len(mine) * len(config.deltas)))


def fast_start(fast: kit.FastMode | None) -> Callable | None:
  """Fast mode: the decoder's image starts the first δ (None: x does)."""
  if fast is None:
    return None
  return lambda targets, z0, phi_x: decoder_lib.warm_start(
      fast.params, fast.spec, targets, z0, phi_x, mode=decoder_lib.DEFAULT_START)


def save(job: Job, s: int, j: int) -> None:
  """The finished item's PNG and its state, written at once (a stopped run keeps it)."""
  job.written.add((s, j))
  results, delta = job.results, job.config.deltas[s]
  report.save_edit(job.workdir, job.tests, job.items[j], delta, results.images[s, j])
  run_state.save_result(job.claim, job.keys[s][j], results.images[s, j], results.loss[s, j],
                        results.evaluations[s, j])


def write(job: Job, t_start: float) -> dict:
  """Gathers every host's items; process 0 checks each edit's PNG and writes the grid, the
  page and `metrics.json`. Returns the run's record."""
  config, tests, items, timings = job.config, job.tests, job.items, job.timings
  mine = sharding.share(len(items))
  edits = pipeline.Edits(*sharding.gather_items(mine, job.results, axis=1))
  run_state.commit(job.claim)
  if not sharding.is_writer():  # process 0 writes the outputs
    timings["total_s"] = time.perf_counter() - t_start
    return dict(outputs=dict(edits=[report.edit_file(tests, items[j], d) for d in config.deltas
                                    for j in mine]), timings=timings, failures=[], written=False)
  keep_gathered(job, mine, edits)
  photo_outputs.save_outputs(job.workdir, config, tests, items, edits.images, edits.finite)
  results = report.Results(tests, items, edits, job.found["neighbourhood"].sets, job.bank_data,
                           job.network, job.found.get("bank_images"))
  return report.write_outputs(config, job.workdir, results, timings, t_start)


def keep_gathered(job: Job, mine: np.ndarray, edits: pipeline.Edits) -> None:
  """Process 0 checks the PNG of every finished item it did not just write (kept by an earlier
  run, or computed by another host) against its result: a missing, truncated or altered one is
  rewritten (`files.restore_file`). It keeps the state of items other hosts computed."""
  results, losses, finite, evaluations = edits
  keys = job.keys
  for s, j in np.ndindex(*finite.shape):
    if not finite[s, j]:
      continue
    if (s, j) not in job.written:
      report.save_edit(job.workdir, job.tests, job.items[j], job.config.deltas[s],
                       results[s, j], kept=True)
    if j not in mine and run_state.load_result(job.claim, keys[s][j], results.shape[-2]) is None:
      run_state.save_result(job.claim, keys[s][j], results[s, j], losses[s, j], evaluations[s, j])
