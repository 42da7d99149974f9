"""The run kit every run shares: the settings' rules and checks, the network, the reverse-map
settings of a run config (`reverse_map_config`), the edits a run names and their neighbours' w
(`make_directions`), fast mode's decoder.

The edit run (`runs/edit.py`), the Python API (`runs/api.py`), inpainting, high resolution, the
sweep, the bank builder and the probes all start from these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import NamedTuple, Sequence

import numpy as np

from dfi_jax.base import run_state
from dfi_jax.data import bank_cache
from dfi_jax.data import faces
from dfi_jax.data import banks
from dfi_jax.base import files as files_lib
from dfi_jax.data import sources
from dfi_jax.data.datasets import common
from dfi_jax.dfi import align
from dfi_jax.dfi import decoder as decoder_lib
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import attribute_vector
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.dfi import reconstruct
from dfi_jax.dfi import where as where_lib
from dfi_jax.eval import judge as judge_lib
from dfi_jax.eval import probe as probe_lib
from dfi_jax.nets import model as model_lib
from dfi_jax.nets import networks
from dfi_jax.nets import pretrained
from dfi_jax.nets import weights as weights_lib
from dfi_jax.outputs import names as output_names
from dfi_jax.runs import differences
from dfi_jax.runs import photos as photos_lib
from dfi_jax.runs import run_bank


RunError = run_state.RunError  # a bad setting or input; the message is the one line a user sees


class Network(NamedTuple):
  net: model_lib.VGG
  params: dict
  provenance: dict
  path: str
  sha256: str = ""  # of the bytes `params` were read from (hashed once, `pretrained.load`)


# Every field of dfi_jax/configs/synthetic.py (tests/runs/test_safety_checked_first.py checks
# none is missing).
RULES = dict(
    variant=run_state.text(), seed=run_state.integer(0), image_size=run_state.integer(32, 1024),
    bank_size=run_state.integer(1), bank_seed=run_state.integer(0),
    test_seed=run_state.integer(0), num_test=run_state.integer(1),
    attributes=run_state.names(), test_names=run_state.names(allow_empty=True),
    weights=run_state.text(), pooling=run_state.choice(("",) + model_lib.POOLING),
    preprocessing=run_state.choice(("",) + model_lib.PREPROCESSING),
    feature_batch=run_state.integer(1), taps=run_state.names(model_lib.CONV_NAMES),
    neighbours=run_state.choice(("attributes", "features")), k=run_state.integer(1),
    scaling=run_state.choice(attribute_vector.SCALINGS), align_neighbours=run_state.boolean(),
    deltas=run_state.numbers(tag=output_names.delta_tag),
    tv_weight=run_state.number(0)._replace(expected="λ >= 0 (a finite number)"),
    tv_beta=run_state.number(0, open_low=True)._replace(expected="β > 0 (a finite number)"),
    iterations=run_state.integer(1), next_iterations=run_state.integer(1),
    solver=run_state.choice(reconstruct.SOLVERS),
    linesearch=run_state.choice(reconstruct.LINESEARCHES),
    linesearch_init=run_state.choice(reconstruct.LINESEARCH_INITS),
    batch_size=run_state.integer(1), chunk=run_state.integer(1), decoder=run_state.text(),
    tv_epsilon=run_state.number(0, open_low=True)._replace(expected="ε > 0 (a finite number)"),
    history=run_state.integer(1), maxls=run_state.integer(1),
    c2=run_state.number(0, 1, open_low=True), scale_first_step=run_state.boolean(),
    fast_backward=run_state.boolean(), winograd=run_state.choice(networks.WINOGRAD),
    remat=run_state.boolean(), joint=run_state.boolean(),
    bank_dir=run_state.text(),
    pixel_deltas=run_state.numbers(), pixel_delta_photos=run_state.number(),
    probe=run_state.choice(("",) + probe_lib.REPRESENTATIONS),
    align=run_state.choice(photos_lib.MODES), faces=run_state.choice(photos_lib.WHICH_FACES),
    face_threshold=run_state.number(), animate=run_state.choice(photos_lib.ANIMATIONS),
    judge=run_state.text(), where=run_state.choice(where_lib.MODES),
    where_sigma=run_state.number(0, 1), where_low=run_state.number(0, 1),
    where_high=run_state.number(0, 1, open_low=True),
    chroma_scale=run_state.integer(1, 64), luma_scale=run_state.integer(1, 64),
    luma_detail=run_state.number(0, 1), colour_share=run_state.number(0, 1),
    where_pixels=run_state.boolean(),
    where_pixel_low=run_state.number(0, 1), where_pixel_high=run_state.number(0, 1, open_low=True),
    where_pixel_sigma=run_state.number(0),
    photo_chroma=run_state.number(0, 1),
    photo_focus_low=run_state.number(0, 1),
    photo_focus_high=run_state.number(0, 1, open_low=True), photo_size=run_state.integer(0, 1024),
    photo_focus_mirror=run_state.boolean(),
    coarse_iterations=run_state.integer(0),
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
  if config.get("where_pixel_low", 0) >= config.get("where_pixel_high", 1):
    raise RunError(f"--config.where_pixel_low={config.where_pixel_low}: expected < "
                   f"--config.where_pixel_high={config.where_pixel_high}")
  if config.get("photo_focus_low", 0) >= config.get("photo_focus_high", 1):
    raise RunError(f"--config.photo_focus_low={config.photo_focus_low}: expected < "
                   f"--config.photo_focus_high={config.photo_focus_high}")
  smallest = model_lib.min_image_size(config.taps, config.pooling or "floor")
  smallest_photo = max(smallest, photos_lib.MIN_PHOTO_SIZE)
  if 0 < config.get("photo_size", 0) < smallest_photo:
    raise RunError(f"--config.photo_size={config.photo_size}: expected 0 or >= {smallest_photo} "
                   f"for taps {config.taps}")
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
    files_lib.check_input_file(path, f"--inputs={path}")
  run_state.check_unique([os.path.realpath(p) for p in inputs], "--inputs")
  names = {"weights": pretrained.NAMED, "decoder": ("",), "judge": ("", judge_lib.DEFAULT)}
  for field, named in names.items():  # names are not files
    path = config.get(field, "")
    if path not in named and os.path.exists(path) and not os.path.isdir(path):
      files_lib.check_input_file(path, f"--config.{field}={path}")  # missing: named on loading
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
  # The bank's images read once: the luminance flags and the pixel baseline read the same rows.
  singles, found = single_edits(bank_data, edits), dict(
      bank_images=common.ReadOnce(bank_data.images))
  others = []  # w_others = project: every other attribute of the bank with K candidates each
  if config.get("w_others", "keep") == "project":
    for e in bank_data.edits:
      pair = neighbours_lib.candidate_masks(bank_data.attributes, e, bank_data.attribute_names)
      if e not in singles and min(map(np.sum, pair)) >= config.k:
        others.append(e)
        masks = {**masks, e.name: pair}

  def directions(phi_x):
    found["neighbourhood"] = nb = feature_bank.find_neighbours(
        bank_data, bank, tests, phi_x, {e.name: masks[e.name] for e in singles + others},
        feature_bank.Search(config.k, config.neighbours))
    ws = (aligned(nb, singles + others) if aligned is not None
          else [attribute_vector.from_rows(nb.bank, nb.used, nb.sets[e.name])
                for e in singles + others])
    diffs = (differences.of(nb, [parts(bank_data, e) for e in edits], found["bank_images"])
             if differences.needed(config) else None)
    found["fine"] = differences.luma_flags(config, diffs)
    found["colour"] = differences.colour_flags(config, diffs, found["fine"])
    found["pixel_where"] = differences.pixel_where(config, diffs, found["fine"],
                                                   tests.originals is not None)
    by_name = {e.name: w for e, w in zip(singles + others, ws)}
    summed = [sum(by_name[p.name] for p in parts(bank_data, e)) for e in edits]
    if config.get("w_others", "keep") != "project":
      return summed
    return [attribute_vector.project_out(w, np.stack([by_name[o.name] for o in singles + others
                                               if o not in parts(bank_data, e)]))
            for e, w in zip(edits, summed)]

  return directions, found


def where_masks(where: np.ndarray | None, found: dict) -> np.ndarray | None:
  """The plan's `[E·B, S, S]` where masks (None: off) times the items' pixel masks when
  `make_directions` made them (`found["pixel_where"]`)."""
  pixels = found.get("pixel_where")
  return where if pixels is None or where is None else where * pixels


def item_flags(found: dict) -> dict:
  """The items' luminance and colour flags that `make_directions` found (None: not used), as
  `pipeline.finished_items`' `fine` and `colour`."""
  return dict(fine=found.get("fine"), colour=found.get("colour"))


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


def reverse_map_config(config) -> reconstruct.ReverseMapConfig:
  """The reverse-map settings of a run config, shared by the edit, inpainting and high-res runs:
  every `ReverseMapConfig` field under its own name (the dataclass default where a config lacks
  it), the where mask from `where`, `where_sigma`, `where_low`, `where_high` (off when absent)."""
  default = where_lib.WhereConfig._field_defaults
  where = where_lib.WhereConfig(
      mode=config.get("where", "off"), sigma=config.get("where_sigma", default["sigma"]),
      low=config.get("where_low", default["low"]), high=config.get("where_high", default["high"]))
  fields = {f.name: config.get(f.name, f.default)
            for f in dataclasses.fields(reconstruct.ReverseMapConfig) if f.name != "where"}
  return reconstruct.ReverseMapConfig(**fields, where=where)


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


def check(config, inputs: Sequence[str] = ()) -> None:
  """Every check an edit run makes before it touches its workdir (`run_state`'s order): the
  settings, the memory an in-memory bank needs, the input files, a built bank's manifest."""
  validate(config)
  check_memory(config)
  check_inputs(config, inputs)
  read_bank_manifest(config)


@contextlib.contextmanager
def bank_dir_errors(config):
  """A `feature_bank.BankError` (a bank that is missing, unfinished or built for other
  settings) re-raised as the one-line RunError naming `--config.bank_dir`."""
  try:
    yield
  except feature_bank.BankError as e:
    raise RunError(f"--config.bank_dir={config.get('bank_dir', '')}: {e}") from None


def read_bank_manifest(config) -> dict | None:
  """`run_bank.read_manifest` with its errors worded for the flag (`bank_dir_errors`)."""
  with bank_dir_errors(config):
    return run_bank.read_manifest(config)


def load_bank(config, network: Network, spec: features_lib.FeatureSpec, phi_of_images
              ) -> tuple[sources.Bank, feature_bank.FeatureBank]:
  """`run_bank.load` with its errors worded for the flag (`bank_dir_errors`)."""
  with bank_dir_errors(config):
    return run_bank.load(config, network, spec, phi_of_images)


def aligned_vectors(config, phi, params, bank_images: np.ndarray,
                    neighbour_sets: Sequence[neighbours_lib.Neighbours]) -> align.AlignedVectors:
  """`align.aligned_vectors` for an edit run on generated faces (`config.align_neighbours`):
  the bank is `faces.sample_face(s)` for s in [bank_seed, bank_seed + bank_size) and the tests
  `sources.test_face_params(config)`; their landmarks come from the generator. Other data
  (their banks carry no landmarks yet) is a RunError."""
  if config.data != "synthetic":
    raise RunError(f"--config.align_neighbours needs landmarks, which only "
                   f"--config.data=synthetic provides (got {config.data!r})")
  size = config.image_size
  bank_params = [faces.sample_face(s) for s in range(config.bank_seed,
                                                     config.bank_seed + config.bank_size)]
  bank = align.Landmarked(bank_images, align.landmarks(bank_params, size))
  return align.aligned_vectors(phi, params, bank,
                               align.landmarks(sources.test_face_params(config), size),
                               neighbour_sets, config.get("align_transform", "similarity"),
                               config.feature_batch)
