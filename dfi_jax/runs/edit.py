"""The edit run behind `python -m experiments.transform`: bank, neighbours, w, reverse maps, outputs.

Writes into `workdir`: `grid.png` (rows = test images; columns = original, each attribute's edit
for each δ, and on synthetic data the counterfactuals), `edits/<image>__<attribute>__d<δ>.png`,
`index.html` and `metrics.json`.

The bank (`feature_bank`): built by `experiments.build_bank` (`config.bank_dir`) or in memory,
searched over every device of every host; after `jax.distributed.initialize` each host edits its
share of the items and process 0 writes the outputs (`sharding.hold_workdir`).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from dfi_jax.dfi import align
from dfi_jax.dfi import decoder as decoder_lib
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib
from dfi_jax.data import image_io
from dfi_jax.dfi import interpolate
from dfi_jax.eval import judge as judge_lib
from dfi_jax.eval import metrics as metrics_lib
from dfi_jax.nets import model as model_lib
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.runs import photos as photos_lib
from dfi_jax.nets import pretrained
from dfi_jax.eval import probe as probe_lib
from dfi_jax.dfi import reconstruct
from dfi_jax import run_state
from dfi_jax.dfi import sharding
from dfi_jax.data import banks
from dfi_jax.data import sources
from dfi_jax.nets import weights as weights_lib


RunError = run_state.RunError  # a bad setting or input; the message is the one line a user sees


class Network(NamedTuple):
  net: model_lib.VGG
  params: dict
  provenance: dict
  path: str


def _delta_tag(delta: float) -> str:
  return f"d{delta:g}"


# Every field of experiments/configs/synthetic.py (tests/test_run_safety checks none is missing).
RULES = dict(
    variant=run_state.text(), seed=run_state.integer(0), image_size=run_state.integer(32, 1024),
    bank_size=run_state.integer(1), bank_seed=run_state.integer(0),
    test_seed=run_state.integer(0), num_test=run_state.integer(1),
    attributes=run_state.names(), test_names=run_state.names(allow_empty=True),
    weights=run_state.text(), pooling=run_state.choice(("",) + model_lib.POOLING),
    preprocessing=run_state.choice(("",) + model_lib.PREPROCESSING),
    feature_batch=run_state.integer(1), taps=run_state.names(model_lib.CONV_NAMES),
    neighbours=run_state.choice(("attributes", "features")), k=run_state.integer(1),
    scaling=run_state.choice(interpolate.SCALINGS), align_neighbours=run_state.boolean(),
    deltas=run_state.numbers(tag=_delta_tag),
    tv_weight=run_state.number(0)._replace(expected="λ >= 0 (a finite number)"),
    tv_beta=run_state.number(0, open_low=True)._replace(expected="β > 0 (a finite number)"),
    iterations=run_state.integer(1), next_iterations=run_state.integer(1),
    solver=run_state.choice(reconstruct.SOLVERS),
    linesearch=run_state.choice(reconstruct.LINESEARCHES),
    linesearch_init=run_state.choice(reconstruct.LINESEARCH_INITS),
    batch_size=run_state.integer(1), chunk=run_state.integer(1), decoder=run_state.text(),
    bank_dir=run_state.text(),
    pixel_deltas=run_state.numbers(), pixel_delta_photos=run_state.number(),
    probe=run_state.choice(("",) + probe_lib.REPRESENTATIONS),
    align=run_state.choice(photos_lib.MODES), faces=run_state.choice(photos_lib.WHICH_FACES),
    face_threshold=run_state.number(), animate=run_state.choice(photos_lib.ANIMATIONS),
    judge=run_state.text())


def validate(config) -> None:
  """Checks every setting a user can get wrong; raises RunError naming the field. `config` is
  read, never changed; lists given as "a,b" are checked split (`run_state.split_lists`)."""
  config = run_state.split_lists(config)
  if config.data not in banks.LOADERS:
    raise RunError(f"--config.data={config.data!r}: expected one of {sorted(banks.LOADERS)}")
  run_state.check_config(config, RULES)
  smallest = model_lib.min_image_size(config.taps, config.pooling or "floor")
  if config.image_size < smallest:
    raise RunError(f"--config.image_size={config.image_size}: expected >= {smallest} for taps "
                   f"{config.taps}")


def check_inputs(config, inputs: Sequence[str] = ()) -> None:
  """The input files' kind and name, before anything runs (a named pipe would block forever)."""
  for path in inputs:
    image_io.check_input_file(path, f"--inputs={path}")
  run_state.check_unique([os.path.realpath(p) for p in inputs], "--inputs")
  for field in ("weights", "decoder", "judge"):
    path = config.get(field, "")
    if path in pretrained.NAMED + ("default",):  # names, not files
      continue
    if os.path.exists(path) and not os.path.isdir(path):  # missing: named on loading
      image_io.check_input_file(path, f"--config.{field}={path}")
  if config.get("judge", "") not in ("", "default"):  # read now, not after the reverse maps
    try:
      judge_lib.load(config.judge)
    except (judge_lib.JudgeError, OSError) as e:
      raise RunError(f"--config.judge={config.judge}: {e}") from None
  if config.get("align_neighbours", False) and inputs:
    raise RunError("--config.align_neighbours needs landmarks; own photos (--inputs) have none")
  photos_lib.check(config, inputs)


def select_edits(bank: sources.Bank, names: Sequence[str]) -> list[neighbours_lib.Edit]:
  """The bank's edits named in `names` (all of them when empty)."""
  by_name = {e.name: e for e in bank.edits}
  run_state.check_unique(names, "--attributes")
  unknown = [n for n in names if n not in by_name]
  if unknown:
    raise RunError(f"unknown attribute(s) {unknown}; valid attributes are {list(by_name)}")
  return [by_name[n] for n in names] if names else list(bank.edits)


def judged_attributes(config, tests: sources.TestImages,
                      bank_data: sources.Bank) -> sources.TestImages:
  """Own photos carry no attribute labels. On a bank labelled with the judge's six attributes
  (the generated faces), the judge's labels of each (aligned) photo stand in for them, so the
  official Hamming rule picks the neighbours and φ is computed only for those. Otherwise the
  photos keep no labels and their neighbours are found in φ space over the whole bank."""
  if not config.judge or tuple(bank_data.attribute_names) != tuple(judge_lib.ATTRIBUTES):
    print("own photos: neighbours by φ distance over the whole bank (no attribute labels)",
          flush=True)
    return tests
  path = judge_lib.DEFAULT_JUDGE if config.judge == "default" else config.judge
  params, _ = judge_lib.load(path)
  labels = judge_lib.predict(params, tests.images) > 0.5
  for name, row in zip(tests.names, labels):
    seen = [a for a, on in zip(judge_lib.ATTRIBUTES, row) if on]
    print(f"{name}: the judge sees {', '.join(seen) or 'none of the attributes'} "
          "(Hamming neighbours)", flush=True)
  return tests._replace(attributes=labels)


def load_network(config) -> Network:
  """The weights `config.weights` names ('' = ImageNet VGG16, 'random', or a file) as a network
  with `config.taps`."""
  path = str(pretrained.resolve(config.weights))
  params, provenance = weights_lib.load_weights(path)
  net = weights_lib.model_for(provenance, taps=tuple(config.taps),
                              pooling=config.pooling or None,
                              preprocessing=config.preprocessing or None)
  return Network(net, params, provenance, path)


class FastMode(NamedTuple):
  """Fast mode's decoder (issue 7): it gives the first δ's reverse map its start."""
  params: dict
  spec: decoder_lib.DecoderSpec
  path: str
  sha256: str


def load_fast_mode(config, network: Network, spec: features_lib.FeatureSpec) -> FastMode | None:
  """The decoder named by `config.decoder` ('' = off), checked against this run's φ."""
  path = config.get("decoder", "")
  if not path:
    return None
  try:
    params, dspec, prov = decoder_lib.load(path)
    sha = run_state.file_sha256(path)
    decoder_lib.check_compatible(prov, spec, config.image_size,
                                 run_state.file_sha256(network.path), path)
  except (decoder_lib.DecoderError, OSError) as e:
    raise RunError(f"--config.decoder={path}: {e}") from None
  return FastMode(params, dspec, path, sha)


def compose_photo(original: np.ndarray, square: np.ndarray, edit: np.ndarray,
                  placement: image_io.Placement) -> np.ndarray:
  """The edit at the photo's own size: original + the upsampled change (edit − fitted input)."""
  change = image_io.unfit_square(np.clip(0.5 + (edit - square) / 2, 0, 1), placement)
  return np.clip(original + (change - 0.5) * 2, 0.0, 1.0).astype(np.float32)


def photo_result(tests: sources.TestImages, i: int, result: np.ndarray) -> np.ndarray:
  """Test image i's `[S, S, 3]` result at its own photo's size (others: unchanged)."""
  if tests.faces is not None:  # a face aligned into the bank's frame (photos.py)
    return photos_lib.to_photo(tests, i, result)
  if tests.originals is not None:
    return compose_photo(tests.originals[i], tests.images[i], result, tests.placements[i])
  return result


def package_versions() -> dict:
  names = ("jax", "jaxlib", "flax", "optax", "jaxopt", "numpy", "pillow", "ml_collections")
  out = {"python": platform.python_version()}
  for n in names:
    try:
      out[n] = importlib.metadata.version(n)
    except importlib.metadata.PackageNotFoundError:
      out[n] = None
  return out


def edit_file(tests: sources.TestImages, item: tuple[int, str], delta: float) -> str:
  return f"edits/{tests.names[item[0]]}__{item[1]}__{_delta_tag(delta)}.png"


def save_edit(workdir: Path, tests: sources.TestImages, item: tuple[int, str], delta: float,
              result: np.ndarray) -> None:
  """One edit's PNG (own photos: at the photo's size), replacing any older file of that name."""
  path = workdir / edit_file(tests, item, delta)
  path.parent.mkdir(exist_ok=True)
  image_io.save_png(path, photo_result(tests, item[0], result))


def run(config, workdir: str | os.PathLike, inputs: Sequence[str] = (),
        attributes: Sequence[str] = ()) -> dict:
  """The whole edit run; returns the metrics record it writes to `metrics.json`.

  Every setting and input is checked before the workdir is touched (run_state's order).
  """
  t_start = time.perf_counter()
  config = run_state.split_lists(config)

  def check():
    validate(config)
    check_inputs(config, inputs)
    feature_bank.read_manifest(config)

  with sharding.hold_workdir(workdir, check=check) as held:
    return _run(config, held.path, inputs, attributes, t_start, held.agree)


def _run(config, workdir: Path, inputs: Sequence[str], attributes: Sequence[str],
         t_start: float, agree=lambda: None) -> dict:
  timings: dict[str, float] = {}
  network = load_network(config)
  size = config.image_size
  spec = features_lib.feature_spec(network.net, network.params, (size, size))
  fast = load_fast_mode(config, network, spec)  # before any long computation
  # Own photos are read first, so a bad file fails before any long computation.
  photos = photos_lib.load(config, inputs) if inputs else None
  print(f"weights: {network.path} — {network.provenance['description']}", flush=True)

  # The bank: images with attributes, and their φ (on disk, or computed when read).
  t0 = time.perf_counter()
  phi = features_lib.make_phi(network.net)

  def bank_phi(images):
    with tqdm(total=len(images), desc="bank φ", unit="img") as bar:
      return features_lib.compute_features(phi, network.params, images, config.feature_batch,
                                           progress=bar.update)

  bank_data, bank = feature_bank.load(config, network, spec, bank_phi)
  edits = select_edits(bank_data, attributes or config.attributes)
  masks = {}
  for e in edits:
    masks[e.name] = neighbours_lib.candidate_masks(bank_data.attributes, e,
                                                   bank_data.attribute_names)
    neighbours_lib.check_candidates(*masks[e.name], config.k, e.name)
  settings = config.to_dict()
  if fast is not None:  # the file's content, not just its path, decides the results
    settings["decoder_sha256"] = fast.sha256
  if bank.description:  # so does the bank's (its dtype, search reduction)
    settings["bank"] = bank.description
  claim = run_state.claim(workdir, run_state.describe(settings, network.path, inputs, edits))
  if claim.resuming:
    print(f"resuming the run in {workdir}: finished edits are kept", flush=True)
  tests = (photos_lib.tests_for(config, photos, bank_data.images) if photos
           else sources.load_tests(config, bank_data, edits))
  if photos and config.neighbours == "attributes":
    tests = judged_attributes(config, tests, bank_data)
  agree()  # every host got this far (many hosts: see sharding.hold_workdir)
  phi_x = features_lib.compute_features(phi, network.params, tests.images,
                                        config.feature_batch)
  found = feature_bank.find_neighbours(config, bank_data, bank, tests, edits, masks, phi_x)
  neighbour_sets = found.sets
  timings["bank_s"] = time.perf_counter() - t0

  # Attribute vectors and targets for every (test image, edit).
  aligned = None
  if config.get("align_neighbours", False):  # neighbours warped onto each test face (align.py)
    aligned = align.run_vectors(config, phi, network.params, bank_data.images,
                                [neighbour_sets[e.name] for e in edits])
  items, targets = [], []
  for n_edit, e in enumerate(edits):
    w = (feature_bank.attribute_vector(found, e.name) if aligned is None
         else jnp.asarray(aligned.w[n_edit]))
    w = interpolate.scale_vector(w, config.scaling)
    targets.append(interpolate.edit_targets(jnp.asarray(phi_x), w, config.deltas))
    items += [(i, e.name) for i in range(len(tests.names))]
  targets = jnp.concatenate(targets, axis=1)  # [S, items, D]
  attributes = [e.name for e in edits]

  # Reverse maps: the first δ from x, each next δ warm-started from the previous result.
  reverse_map = reconstruct.cached(network.net, spec, reconstruct.config_for_run(config))
  x_index = np.asarray([i for i, _ in items])
  x_items = tests.images[x_index]
  iterations = [config.iterations] + [config.next_iterations] * (len(config.deltas) - 1)
  shape = (len(config.deltas), len(items))
  results = np.zeros(shape + (size, size, 3), np.float32)
  losses = np.full(shape, np.nan, np.float32)
  finite = np.zeros(shape, bool)
  evaluations = np.zeros(shape, np.int64)
  keys = [[f"{tests.names[i]}__{a}__{_delta_tag(d)}" for i, a in items] for d in config.deltas]
  run_state.check_unique([k for row in keys for k in row], "edits")
  for s, j in np.ndindex(*shape):  # items finished by an earlier, interrupted run
    done = run_state.load_result(claim, keys[s][j], size)
    if done is not None:
      results[s, j], losses[s, j] = done["image"], done["loss"]
      evaluations[s, j], finite[s, j] = done["evaluations"], True
  t0 = time.perf_counter()
  # Each host's share of the (image, edit) items, batches split over its devices.
  mine, devices = sharding.share(len(items)), sharding.local_mesh()
  with tqdm(total=sum(iterations) * len(mine), desc="reverse map", unit="it·img") as bar:
    for s, delta in enumerate(config.deltas):
      for b in range(0, len(mine), config.batch_size):
        sl = mine[b:b + config.batch_size]
        n = len(sl)
        if finite[s, sl].all():
          bar.update(iterations[s] * n)
          continue
        if s > 0 and not finite[s - 1, sl].all():  # a failed previous δ fails this one too
          bar.update(iterations[s] * n)
          continue
        z0 = x_items[sl] if s == 0 else results[s - 1, sl]
        if s == 0 and fast is not None:
          z0 = decoder_lib.warm_start(fast.params, fast.spec, targets[s, sl], z0,
                                      phi_x[x_index[sl]], mode=decoder_lib.DEFAULT_START)
        res = sharding.reverse_maps(reverse_map, devices, network.params, targets[s, sl], z0,
                                    iterations[s], progress=lambda k, n=n: bar.update(k * n))
        results[s, sl], losses[s, sl] = res.images, res.loss
        finite[s, sl], evaluations[s, sl] = res.finite, res.evaluations
        for j in sl:
          if finite[s, j]:
            save_edit(workdir, tests, items[j], delta, results[s, j])
            run_state.save_result(claim, keys[s][j], results[s, j], losses[s, j],
                                  evaluations[s, j])
  timings["reverse_map_s"] = time.perf_counter() - t0
  timings["reverse_map_per_image_s"] = (timings["reverse_map_s"]
                                        / max(1, len(mine) * len(config.deltas)))
  results, losses, finite, evaluations = sharding.gather_items(
      mine, (results, losses, finite, evaluations), axis=1)

  run_state.commit(claim)
  if not sharding.is_writer():  # process 0 writes the outputs
    timings["total_s"] = time.perf_counter() - t_start
    return dict(outputs=dict(edits=[edit_file(tests, items[j], d) for d in config.deltas
                                    for j in mine]), timings=timings, failures=[], written=False)
  keep_gathered(workdir, claim, tests, items, keys, mine, results, losses, finite, evaluations,
                config.deltas)
  photos_lib.save_outputs(workdir, config, tests, items, results, finite)
  return write_outputs(config, workdir, network, tests, attributes, items, results, losses,
                       finite, evaluations, neighbour_sets, bank_data, timings, t_start)


def keep_gathered(workdir: Path, claim: run_state.Claim, tests: sources.TestImages, items, keys,
                  mine: np.ndarray, results, losses, finite, evaluations, deltas) -> None:
  """Process 0 keeps the finished items other hosts computed (their PNGs and state), unless the
  workdir (a shared file system) already holds them; one host: nothing to do."""
  for s, j in np.ndindex(*finite.shape):
    if j in mine or not finite[s, j]:
      continue
    if not (workdir / edit_file(tests, items[j], deltas[s])).exists():
      save_edit(workdir, tests, items[j], deltas[s], results[s, j])
    if run_state.load_result(claim, keys[s][j], results.shape[-2]) is None:
      run_state.save_result(claim, keys[s][j], results[s, j], losses[s, j], evaluations[s, j])


def write_outputs(config, workdir, network, tests, attributes, items, results, losses, finite,
                  evaluations, neighbour_sets, bank_data, timings, t_start) -> dict:
  bank_images = bank_data.images
  failures, per_image, files, baselines = [], [], {}, {}
  for d in ("baselines", "originals"):
    (workdir / d).mkdir(exist_ok=True)
  for i, name in enumerate(tests.names):
    original = tests.originals[i] if tests.originals is not None else tests.images[i]
    image_io.save_png(workdir / "originals" / f"{name}.png", original)
  # The pixel-space baseline, with the δ that best matches the counterfactual when there is one.
  for i, a in items:
    nb = neighbour_sets[a]
    src, tgt, x = np.asarray(nb.source[i]), np.asarray(nb.target[i]), tests.images[i]
    best_r, best_d = float("nan"), config.pixel_delta_photos
    if tests.counterfactuals is not None:
      cf, m = tests.counterfactuals[a][i], tests.masks[a][i]
      best_r, best_d = min((metrics_lib.counterfactual_ratio(
          metrics_lib.pixel_baseline(x, bank_images, src, tgt, d), x, cf, m), d)
          for d in config.pixel_deltas)
    baseline = metrics_lib.pixel_baseline(x, bank_images, src, tgt, best_d)
    baselines[(i, a)] = (baseline, best_r, best_d)
    baseline = photo_result(tests, i, baseline)
    image_io.save_png(workdir / "baselines" / f"{tests.names[i]}__{a}__pixel.png", baseline)
  for s, delta in enumerate(config.deltas):
    for j, (i, a) in enumerate(items):
      if not finite[s, j]:
        failures.append(f"{tests.names[i]} / {a} / δ={delta:g}: loss became non-finite; "
                        "no image written")
        continue
      files[(s, j)] = edit_file(tests, (i, a), delta)
      if tests.counterfactuals is not None:
        x, cf, m = tests.images[i], tests.counterfactuals[a][i], tests.masks[a][i]
        baseline, best_r, best_d = baselines[(i, a)]
        per_image.append(dict(
            image=tests.names[i], attribute=a, delta=float(delta),
            r=metrics_lib.counterfactual_ratio(results[s, j], x, cf, m),
            outside=metrics_lib.outside_change(results[s, j], x, m),
            baseline_r=best_r, baseline_outside=metrics_lib.outside_change(baseline, x, m),
            baseline_delta=best_d, loss=float(losses[s, j]),
            evaluations=int(evaluations[s, j])))
  probe_accuracy = None
  if config.probe and per_image:
    probe_accuracy = add_probe_scores(config, per_image, tests, items, results, finite,
                                      bank_data)
  judge_record = None
  if config.get("judge", "") and per_image:
    judge_record = add_judge_scores(config, per_image, tests, items, results, finite, baselines)

  summary = {}
  for s, delta in enumerate(config.deltas):
    rows = [r for r in per_image if r["delta"] == float(delta)]
    summary[_delta_tag(delta)] = metrics_lib.summarise(rows, attributes)

  # The grid: original | edits for each δ | counterfactuals.
  grid_rows = []
  col_labels = ["input"] + [f"{a} d={d:g}" for d in config.deltas for a in attributes]
  if tests.counterfactuals is not None:
    col_labels += [f"true {a}" for a in attributes]
  blank = np.ones_like(tests.images[0])
  for i, name in enumerate(tests.names):
    row = [tests.images[i]]
    for s in range(len(config.deltas)):
      for a in attributes:
        j = items.index((i, a))
        row.append(results[s, j] if finite[s, j] else blank)
    if tests.counterfactuals is not None:
      row += [tests.counterfactuals[a][i] for a in attributes]
    grid_rows.append(row)
  image_io.save_grid(workdir / "grid.png", grid_rows, row_labels=tests.names,
                     col_labels=col_labels)

  timings["total_s"] = time.perf_counter() - t_start
  record = dict(
      settings=config.to_dict(),
      weights=dict(path=network.path, provenance=network.provenance),
      data="photos" if tests.originals is not None else config.data,
      images=tests.names,
      summary=summary,
      probe=dict(representation=config.probe, accuracy_on_held_out=probe_accuracy),
      judge=judge_record,
      per_image=per_image,
      failures=failures,
      outputs=dict(grid="grid.png", edits=sorted(files.values()), index="index.html",
                   originals=[f"originals/{n}.png" for n in tests.names],
                   baselines=dict(pixel=sorted(f"baselines/{tests.names[i]}__{a}__pixel.png"
                                               for i, a in items)),
                   **photos_lib.output_files(config, tests, attributes)),
      timings=timings,
      versions=package_versions(),
      devices=[str(d) for d in jax.devices()],
  )
  record["settings"]["attributes"] = list(attributes)
  write_index(workdir, config, network, tests, attributes, items, files, summary, failures)
  image_io.atomic_write_json(workdir / "metrics.json", image_io.jsonable(record))
  return record


def add_judge_scores(config, per_image, tests, items, results, finite, baselines) -> dict:
  """Adds the attribute judge's verdicts to each synthetic row (in place); returns the judge's
  file, its recorded held-out accuracy and its accuracy on this run's inputs and counterfactuals.

  Per row: `judge_success` (1.0 when the judge sees the added attribute on the edit),
  `judge_probability`, `judge_preservation` (fraction of the other attributes whose judged label
  is unchanged), the same for the pixel baseline, and `judge_prefers_dfi`: the judge-scored
  two-alternative choice between the DFI edit and the pixel baseline — an image that keeps every
  other attribute beats one that does not; otherwise the higher probability of the added
  attribute wins (a tie is 0.5).
  """
  path = judge_lib.DEFAULT_JUDGE if config.judge == "default" else config.judge
  try:
    params, provenance = judge_lib.load(path)
  except (judge_lib.JudgeError, OSError) as e:
    raise RunError(f"--config.judge={config.judge}: {e}") from None
  done = [(s, j) for s in range(len(config.deltas)) for j in range(len(items)) if finite[s, j]]
  inputs = tests.images[[items[j][0] for _, j in done]]
  added = [items[j][1] for _, j in done]
  dfi = judge_lib.score_edits(params, inputs, np.stack([results[s, j] for s, j in done]), added)
  pixel = judge_lib.score_edits(params, inputs, np.stack([baselines[items[j]][0]
                                                          for _, j in done]), added)
  for row, d, p in zip(per_image, dfi, pixel):  # rows are in `done` order
    keeps_d, keeps_p = d["preservation"] == 1.0, p["preservation"] == 1.0
    if keeps_d != keeps_p:
      prefers = float(keeps_d)
    else:
      prefers = 0.5 if d["probability"] == p["probability"] else float(
          d["probability"] > p["probability"])
    row.update(judge_success=float(d["success"]), judge_probability=d["probability"],
               judge_preservation=d["preservation"], judge_changed=",".join(d["changed"]),
               baseline_judge_success=float(p["success"]),
               baseline_judge_preservation=p["preservation"], judge_prefers_dfi=prefers)
  truth = judge_lib.predict(params, tests.images) > 0.5
  accuracy = {}
  for a in sorted({a for _, a in items}):
    col = list(judge_lib.ATTRIBUTES).index(a)
    on_cf = judge_lib.predict(params, tests.counterfactuals[a])[:, col] > 0.5
    accuracy[a] = float(np.mean(np.concatenate([truth[:, col] == tests.attributes[:, col],
                                                on_cf != tests.attributes[:, col]])))
  return dict(path=str(path), sha256=run_state.file_sha256(path),
              description=provenance.get("description", ""),
              held_out_accuracy=(provenance.get("held_out") or {}).get("accuracy"),
              accuracy_on_this_run=accuracy)


def add_probe_scores(config, per_image, tests, items, results, finite, bank_data) -> dict:
  """Adds the attribute probe's success and preservation to each synthetic row (in place);
  returns the probe's accuracy on the held-out originals and counterfactuals."""
  probe = probe_lib.fit(probe_lib.pixel_features(bank_data.images), bank_data.attributes,
                        config.probe)
  names = list(bank_data.attribute_names)
  before = probe_lib.predict(probe, probe_lib.pixel_features(tests.images))
  rows = iter(per_image)
  accuracy = {}
  for s in range(len(config.deltas)):
    for j, (i, a) in enumerate(items):
      if not finite[s, j]:
        continue
      row = next(rows)
      after = probe_lib.predict(probe, probe_lib.pixel_features(results[s, j][None]))[0]
      row["probe_success"], row["probe_preservation"] = probe_lib.edit_scores(
          before[i], after, names.index(a))
  for a in {a for _, a in items}:
    col = names.index(a)
    cf = probe_lib.predict(probe, probe_lib.pixel_features(tests.counterfactuals[a]))[:, col]
    truth = tests.attributes[:, col]
    accuracy[a] = float(np.mean(np.concatenate([before[:, col] == truth, cf == ~truth])))
  return accuracy


def write_index(workdir, config, network, tests, attributes, items, files, summary, failures):
  prov = network.provenance
  sections = [dict(
      heading="Settings",
      text=(f"Weights: {prov['description']} (kind {prov['kind']}, width {prov['width']}, "
            f"{prov['preprocessing']} preprocessing, {prov['pooling']} pooling). "
            f"{prov.get('quality', '')} K={config.k}, scaling {config.scaling}, "
            f"δ={list(config.deltas)}, λ={config.tv_weight}, β={config.tv_beta}, "
            f"{config.iterations} iterations ({config.solver})."),
      figures=[dict(src="grid.png", caption="rows: test images; columns: input, edits, "
                    "and on synthetic data the true counterfactuals")])]
  for delta_tag, per_attr in summary.items():
    if per_attr:
      sections.append(dict(heading=f"Quality at {delta_tag} (counterfactual benchmark)", table=dict(
          columns=["attribute", "judge success", "judge preservation", "DFI r (in region)",
                   "DFI change outside", "pixel: judge success / preservation", "pixel r",
                   "pixel change outside", "judge prefers DFI : pixel", "probe success",
                   "probe preservation"],
          rows=[[a, _pct(v.get("judge_success")), _pct(v.get("judge_preservation")),
                 f"{v['r']:.3f}", f"{v['outside']:.4f}",
                 f"{_pct(v.get('baseline_judge_success'))} / "
                 f"{_pct(v.get('baseline_judge_preservation'))}",
                 f"{v['baseline_r']:.3f}", f"{v['baseline_outside']:.4f}",
                 preference_ratio(v.get("judge_prefers_dfi")),
                 _pct(v.get("probe_success")), _pct(v.get("probe_preservation"))]
                for a, v in per_attr.items()])))
  for a in attributes:
    figs = [dict(src=files[(s, j)], caption=f"{tests.names[i]}: {a}, δ={d:g}")
            for s, d in enumerate(config.deltas) for j, (i, b) in enumerate(items)
            if b == a and (s, j) in files]
    sections.append(dict(heading=f"Edit: {a}", figures=figs))
  sections += photos_lib.index_sections(config, tests, attributes)
  if failures:
    sections.append(dict(heading="Failures", text="; ".join(failures)))
  image_io.write_index_html(workdir / "index.html", "DFI edits", sections)


def _pct(value) -> str:
  return "–" if value is None else f"{100 * value:.0f} %"


def preference_ratio(fraction) -> str:
  """`fraction` of choices won by DFI as a ratio DFI : baseline ("3.0 : 1", "all : 0")."""
  if fraction is None:
    return "–"
  if fraction >= 1.0:
    return "all : 0"
  return f"{fraction / (1 - fraction):.2f} : 1"

