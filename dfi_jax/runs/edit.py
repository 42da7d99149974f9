"""The edit run behind `python -m experiments.transform`: bank, neighbours, w, reverse maps, outputs.

Writes into `workdir`: `grid.png` (rows = test images; columns = original, each attribute's edit
for each δ, and on synthetic data the counterfactuals), `edits/<image>__<attribute>__d<δ>.png`,
`index.html` and `metrics.json`.

The bank (`feature_bank`): built by `experiments.build_bank` (`config.bank_dir`) or in memory,
searched over every device of every host; after `jax.distributed.initialize` each host edits its
share of the items and process 0 writes the outputs (`sharding.hold_workdir`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from dfi_jax import run_state
from dfi_jax.data import bank_cache
from dfi_jax.data import banks
from dfi_jax.data import image_io
from dfi_jax.data import sources
from dfi_jax.dfi import align
from dfi_jax.dfi import decoder as decoder_lib
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import interpolate
from dfi_jax.dfi.interpolate import delta_tag
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.dfi import pipeline
from dfi_jax.dfi import reconstruct
from dfi_jax.dfi import sharding
from dfi_jax.dfi import where as where_lib
from dfi_jax.eval import judge as judge_lib
from dfi_jax.eval import probe as probe_lib
from dfi_jax.nets import model as model_lib
from dfi_jax.nets import pretrained
from dfi_jax.nets import weights as weights_lib
from dfi_jax.runs import photo_outputs
from dfi_jax.runs import photos as photos_lib
from dfi_jax.runs import report
from dfi_jax.runs.report import edit_file, save_edit, write_outputs


RunError = run_state.RunError  # a bad setting or input; the message is the one line a user sees


class Network(NamedTuple):
  net: model_lib.VGG
  params: dict
  provenance: dict
  path: str
  sha256: str = ""  # of the bytes `params` were read from (hashed once, `pretrained.load`)


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
    deltas=run_state.numbers(tag=delta_tag),
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
    judge=run_state.text(), where=run_state.choice(where_lib.MODES),
    where_sigma=run_state.number(0, 1), where_low=run_state.number(0, 1),
    where_high=run_state.number(0, 1, open_low=True),
    chroma_scale=run_state.integer(1, 64), photo_chroma=run_state.number(0, 1),
    w_others=run_state.choice(("keep", "project")))


def validate(config) -> None:
  """Checks every setting a user can get wrong; raises RunError naming the field. `config` is
  read, never changed; lists given as "a,b" are checked split (`run_state.split_lists`)."""
  config = run_state.split_lists(config)
  if config.data not in banks.LOADERS:
    raise RunError(f"--config.data={config.data!r}: expected one of {sorted(banks.LOADERS)}")
  run_state.check_config(config, RULES)
  if config.get("where_low", 0) >= config.get("where_high", 1):
    raise RunError(f"--config.where_low={config.where_low}: expected < --config.where_high="
                   f"{config.where_high}")
  smallest = model_lib.min_image_size(config.taps, config.pooling or "floor")
  if config.image_size < smallest:
    raise RunError(f"--config.image_size={config.image_size}: expected >= {smallest} for taps "
                   f"{config.taps}")


def check_memory(config) -> None:
  """Refuses an in-memory bank (generated faces, no `bank_dir`) larger than this machine's
  memory, naming what it would need, before anything is allocated."""
  if config.data != "synthetic" or config.get("bank_dir", ""):
    return
  need = config.bank_size * config.image_size ** 2 * 3 * 4  # its images, float32
  have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if need > have:
    raise RunError(f"--config.bank_size={config.bank_size}: the generated bank's images alone "
                   f"would need {need / 2**30:,.1f} GiB in memory ({config.bank_size} × "
                   f"{config.image_size}² × 3 float32), this machine has {have / 2**30:,.1f} "
                   "GiB; use a smaller bank, or build it on disk (experiments.build_bank, "
                   "--config.bank_dir)")


def check_inputs(config, inputs: Sequence[str] = ()) -> None:
  """The input files' kind and name, before anything runs (a named pipe would block forever)."""
  for path in inputs:
    image_io.check_input_file(path, f"--inputs={path}")
  run_state.check_unique([os.path.realpath(p) for p in inputs], "--inputs")
  names = {"weights": pretrained.NAMED, "decoder": ("",), "judge": ("", judge_lib.DEFAULT)}
  for field, named in names.items():  # names are not files
    path = config.get(field, "")
    if path not in named and os.path.exists(path) and not os.path.isdir(path):
      image_io.check_input_file(path, f"--config.{field}={path}")  # missing: named on loading
  if config.get("judge", "") not in names["judge"]:  # read now, not after the reverse maps
    try:
      judge_lib.load(config.judge)
    except (judge_lib.JudgeError, OSError) as e:
      raise RunError(f"--config.judge={config.judge}: {e}") from None
  if config.get("align_neighbours", False) and inputs:
    raise RunError("--config.align_neighbours needs landmarks; own photos (--inputs) have none")
  photos_lib.check(config, inputs)


COMBINE = "+"  # `older+eyeglasses`: one edit along the sum of its parts' w


def select_edits(bank: sources.Bank, names: Sequence[str],
                 label: str = "--attributes") -> list[neighbours_lib.Edit]:
  """The bank's edits named in `names` (all of them when empty); a name joining several with
  `COMBINE` is one combined edit (`parts`)."""
  by_name = {e.name: e for e in bank.edits}
  run_state.check_unique(names, label)
  unknown = [p for n in names for p in n.split(COMBINE) if p not in by_name]
  if unknown:
    raise RunError(f"{label}: unknown attribute(s) {unknown}; valid attributes are "
                   f"{list(by_name)}, or several joined by '{COMBINE}' (older+eyeglasses)")
  for n in names:
    if len(set(n.split(COMBINE))) != len(n.split(COMBINE)):
      raise RunError(f"{label}: {n!r} names an attribute twice; expected distinct parts")
  return ([by_name[n] if COMBINE not in n else sources.Edit(n, n) for n in names] if names
          else list(bank.edits))


def parts(bank: sources.Bank, edit: neighbours_lib.Edit) -> list[neighbours_lib.Edit]:
  """The bank's single edits a (combined) edit adds: itself, or each part of `a+b`."""
  by_name = {e.name: e for e in bank.edits}
  return [by_name[p] for p in edit.name.split(COMBINE)] if COMBINE in edit.name else [edit]


def single_edits(bank: sources.Bank, edits: Sequence[neighbours_lib.Edit]
                 ) -> list[neighbours_lib.Edit]:
  """Every single edit `edits` use, each once, in order."""
  return list(dict.fromkeys(p for e in edits for p in parts(bank, e)))


def edit_masks(bank: sources.Bank, edits: Sequence[neighbours_lib.Edit], k: int) -> dict:
  """Single edit name -> its `[N]` source and target candidate masks (checked to hold k)."""
  return neighbours_lib.edit_masks(bank.attributes, single_edits(bank, edits),
                                   bank.attribute_names, k)


def make_directions(config, bank_data: sources.Bank, bank: feature_bank.FeatureBank,
                    tests: sources.TestImages, edits: Sequence[neighbours_lib.Edit],
                    masks: dict, aligned=None):
  """`(directions, found)`: `directions(φ(x) [B, D])` finds every single edit's neighbours
  (`feature_bank.find_neighbours`, the run's rule) and returns each edit's unscaled `[B, D]` w
  (a combined edit's: the sum of its parts'); `found["neighbourhood"]` then holds what it found.
  `aligned(neighbourhood, singles)`, when given, returns the singles' w instead (align_neighbours).
  The command and `dfi_jax.edit` both edit through this."""
  singles, found = single_edits(bank_data, edits), {}
  others = []  # w_others = project: every other attribute of the bank with K candidates each
  if config.get("w_others", "keep") == "project":
    for e in bank_data.edits:
      pair = neighbours_lib.candidate_masks(bank_data.attributes, e, bank_data.attribute_names)
      if e not in singles and min(map(np.sum, pair)) >= config.k:
        others.append(e)
        masks = {**masks, e.name: pair}

  def directions(phi_x):
    found["neighbourhood"] = nb = feature_bank.find_neighbours(
        config, bank_data, bank, tests, singles + others, masks, phi_x)
    ws = (aligned(nb, singles + others) if aligned is not None
          else [feature_bank.attribute_vector(nb, e.name) for e in singles + others])
    by_name = {e.name: w for e, w in zip(singles + others, ws)}
    summed = [sum(by_name[p.name] for p in parts(bank_data, e)) for e in edits]
    if config.get("w_others", "keep") != "project":
      return summed
    return [where_lib.project_out(w, np.stack([by_name[o.name] for o in singles + others
                                               if o not in parts(bank_data, e)]))
            for e, w in zip(edits, summed)]

  return directions, found


def check_combined(config, edits: Sequence[neighbours_lib.Edit], photos: bool) -> None:
  """Combined edits are for own photos: generated test faces are scored one attribute at a time
  against their counterfactual."""
  combined = [e.name for e in edits if COMBINE in e.name]
  if combined and not photos:
    raise RunError(f"--attributes={combined[0]}: a combined edit needs --inputs (own photos); "
                   "the generated test faces are scored one attribute at a time")
  if combined and config.get("align_neighbours", False):
    raise RunError(f"--attributes={combined[0]}: a combined edit cannot be used with "
                   "--config.align_neighbours")


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
  path = judge_lib.path_for(config.judge)
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
  bank_cache.use_compilation_cache()  # the reverse map's compiled solver, kept across runs
  params, provenance, path, sha256 = pretrained.load(config.weights)
  net = weights_lib.model_for(provenance, taps=tuple(config.taps),
                              pooling=config.pooling or None,
                              preprocessing=config.preprocessing or None)
  return Network(net, params, provenance, str(path), sha256)


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
                                 network.sha256, path)
  except (decoder_lib.DecoderError, OSError) as e:
    raise RunError(f"--config.decoder={path}: {e}") from None
  return FastMode(params, dspec, path, sha)


def run(config, workdir: str | os.PathLike, inputs: Sequence[str] = (),
        attributes: Sequence[str] = ()) -> dict:
  """The whole edit run; returns the metrics record it writes to `metrics.json`.

  Every setting and input is checked before the workdir is touched (run_state's order).
  """
  t_start = time.perf_counter()
  config = run_state.split_lists(config)

  def check():
    validate(config)
    check_memory(config)
    check_inputs(config, inputs)
    feature_bank.read_manifest(config)

  with sharding.hold_workdir(workdir, check=check) as held:
    return _run(config, held.path, inputs, attributes, t_start, held.agree)


def _run(config, workdir: Path, inputs: Sequence[str], attributes: Sequence[str],
         t_start: float, agree=lambda: None) -> dict:
  timings: dict[str, float] = {}
  network = load_network(config)
  size = config.image_size
  pipe = pipeline.make(network.net, network.params, size, reconstruct.config_for_run(config))
  phi, spec = pipe.phi, pipe.spec
  fast = load_fast_mode(config, network, spec)  # before any long computation
  # Own photos are read first, so a bad file fails before any long computation; hashed before
  # and checked after, so the run records the bytes it edited.
  inputs_sha256 = [run_state.file_sha256(p) for p in inputs]
  photos = photos_lib.load(config, inputs) if inputs else None
  run_state.check_unchanged(inputs, inputs_sha256, "--inputs")
  print(f"weights: {network.path} — {network.provenance['description']}", flush=True)

  # The bank: images with attributes, and their φ (on disk, or computed when read).
  t0 = time.perf_counter()

  def bank_phi(images):
    with tqdm(total=len(images), desc="bank φ", unit="img") as bar:
      return features_lib.compute_features(phi, network.params, images, config.feature_batch,
                                           progress=bar.update)

  bank_data, bank = feature_bank.load(config, network, spec, bank_phi)
  edits = select_edits(bank_data, attributes or config.attributes)
  check_combined(config, edits, bool(photos))
  masks = edit_masks(bank_data, edits, config.k)
  settings = config.to_dict()
  if fast is not None:  # the file's content, not just its path, decides the results
    settings["decoder_sha256"] = fast.sha256
  if bank.description:  # so does the bank's (its dtype, search reduction)
    settings["bank"] = bank.description
  claim = run_state.claim(workdir, run_state.describe(settings, network.sha256, inputs, edits,
                                                      inputs_sha256))
  if claim.resuming:
    print(f"resuming the run in {workdir}: finished edits are kept", flush=True)
  tests = (photos_lib.tests_for(config, photos, bank_data.images) if photos
           else sources.load_tests(config, bank_data, edits))
  if photos and config.neighbours == "attributes":
    tests = judged_attributes(config, tests, bank_data)
    for e in edits:
      has = report.already_has(tests, bank_data.attribute_names, e.name)
      if has:
        print(f"note: the judge says {', '.join(has)} already has {e.name}; adding it "
              "changes little", flush=True)
  agree()  # every host got this far (many hosts: see sharding.hold_workdir)
  timings["bank_s"] = time.perf_counter() - t0

  def aligned(nb, singles):  # neighbours warped onto each test face
    vectors = align.run_vectors(config, phi, network.params, bank_data.images,
                                [nb.sets[e.name] for e in singles])
    return [jnp.asarray(w) for w in vectors.w]

  directions, found = make_directions(
      config, bank_data, bank, tests, edits, masks,
      aligned if config.get("align_neighbours", False) else None)

  # Each (test image, edit) for each δ; the first δ from x, each next one from the previous
  # result; items finished by an earlier, interrupted run are kept.
  items = [(i, e.name) for e in edits for i in range(len(tests.names))]
  keys = [[f"{tests.names[i]}__{a}__{delta_tag(d)}" for i, a in items] for d in config.deltas]
  run_state.check_unique([k for row in keys for k in row], "edits")
  kept = pipeline.empty(len(config.deltas), len(items), (size, size, 3))
  for s, j in np.ndindex(*kept.finite.shape):
    done = run_state.load_result(claim, keys[s][j], size)
    if done is not None:
      kept.images[s, j], kept.loss[s, j] = done["image"], done["loss"]
      kept.evaluations[s, j], kept.finite[s, j] = done["evaluations"], True
  iterations = pipeline.iterations_for(config.deltas, config.iterations, config.next_iterations)
  # Each host's share of the items, batches split over its devices.
  mine, devices = sharding.share(len(items)), sharding.local_mesh()

  def solve(targets, z0, n, progress):
    return sharding.reverse_maps(pipe.reverse_map, devices, network.params, targets, z0, n,
                                 progress=progress)

  def first_start(targets, z0, phi_x):  # fast mode: the decoder's image
    return decoder_lib.warm_start(fast.params, fast.spec, targets, z0, phi_x,
                                  mode=decoder_lib.DEFAULT_START)

  written = set()  # the PNGs this run writes; every other finished one is checked at the end

  def on_finished(s, j, edits):
    written.add((s, j))
    save_edit(workdir, tests, items[j], config.deltas[s], edits.images[s, j])
    run_state.save_result(claim, keys[s][j], edits.images[s, j], edits.loss[s, j],
                          edits.evaluations[s, j])

  with tqdm(total=sum(iterations) * len(mine), desc="reverse map", unit="it·img") as bar:
    edited = pipeline.edit(
        pipe, tests.images, directions, config.deltas, iterations, scaling=config.scaling,
        batch_size=config.batch_size, feature_batch=config.feature_batch, solve=solve,
        first_start=first_start if fast is not None else None, rows=mine, kept=kept,
        on_finished=on_finished, progress=bar.update)
  neighbour_sets = found["neighbourhood"].sets
  timings["bank_s"] += edited.seconds["directions_s"]
  timings["reverse_map_s"] = edited.seconds["reverse_map_s"]
  timings["reverse_map_per_image_s"] = (timings["reverse_map_s"]
                                        / max(1, len(mine) * len(config.deltas)))
  edits_done = pipeline.Edits(*sharding.gather_items(mine, edited.edits, axis=1))

  run_state.commit(claim)
  if not sharding.is_writer():  # process 0 writes the outputs
    timings["total_s"] = time.perf_counter() - t_start
    return dict(outputs=dict(edits=[edit_file(tests, items[j], d) for d in config.deltas
                                    for j in mine]), timings=timings, failures=[], written=False)
  keep_gathered(workdir, claim, tests, items, keys, mine, edits_done, config.deltas, written)
  photo_outputs.save_outputs(workdir, config, tests, items, edits_done.images, edits_done.finite)
  return write_outputs(config, workdir, network, tests, items, edits_done, neighbour_sets,
                       bank_data, timings, t_start)


def keep_gathered(workdir: Path, claim: run_state.Claim, tests: sources.TestImages, items, keys,
                  mine: np.ndarray, edits: pipeline.Edits, deltas, written=frozenset()) -> None:
  """Process 0 checks the PNG of every finished item it did not just write (kept by an earlier
  run, or computed by another host) against its result: a missing, truncated or altered one is
  rewritten (`image_io.restore_file`). It keeps the state of items other hosts computed."""
  results, losses, finite, evaluations = edits
  for s, j in np.ndindex(*finite.shape):
    if not finite[s, j]:
      continue
    if (s, j) not in written:
      save_edit(workdir, tests, items[j], deltas[s], results[s, j], kept=True)
    if j not in mine and run_state.load_result(claim, keys[s][j], results.shape[-2]) is None:
      run_state.save_result(claim, keys[s][j], results[s, j], losses[s, j], evaluations[s, j])
