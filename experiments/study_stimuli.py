"""Build the perceptual study's 2AFC trials and rating page from transform runs.

  python -m experiments.study_stimuli --runs=runs/demo --baseline_dirs=baselines/pixel \
      --out_dir=runs/study

  --runs=DIR,…            run directories of `python -m experiments.transform`
  --baseline_dirs=DIR,…   other methods' outputs, `<image>__<attribute>.png` (one folder each;
                          a run's own `baselines/<image>__<attribute>__<method>.png` are used too)
  --num_shards/--shard_index  this host's share of the trials; writes out_dir/shard_<k>_of_<n>
  --distributed           every host runs this same command and writes its own shard (one per
                          host); process 0 adds out_dir/index.html linking them
  --overwrite             replace another study in the folder (rebuilding the same one needs none)

Open `<out_dir>/index.html` in a browser (or serve the folder with `python -m http.server`).
"""

import functools

from absl import flags

from dfi_jax.eval.study import stimuli
from experiments import cli

_RUNS = flags.DEFINE_list("runs", None, "Transform run directories.", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Study folder to write.", required=True)
_BASELINE_DIRS = flags.DEFINE_list("baseline_dirs", [], "Folders of <image>__<attribute>.png.")
_BASELINE_NAMES = flags.DEFINE_list("baseline_names", [],
                                    "Method name per baseline folder (default: folder names).")
_DELTAS = flags.DEFINE_list("deltas", [], "DFI δ values to show (default: each run's largest).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for sides, attention checks and order.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 1, "Split the trials into this many studies.")
_SHARD_INDEX = flags.DEFINE_integer("shard_index", 0, "Which shard this process writes.")
_ATTENTION_FRACTION = flags.DEFINE_float("attention_fraction", 0.1,
                                         "Attention checks per main trial.")
_MIN_ATTENTION = flags.DEFINE_integer("min_attention", 3, "Attention checks per shard, at least.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace another study in --out_dir (its "
                               "collected answers will no longer match).")
_DISTRIBUTED = cli.define_distributed_flags()


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  try:
    deltas = [float(d) for d in _DELTAS.value]
  except ValueError:
    raise ValueError(f"--deltas={','.join(_DELTAS.value)}: expected numbers") from None
  build = functools.partial(
      stimuli.build_study, _RUNS.value, _OUT_DIR.value, baseline_dirs=_BASELINE_DIRS.value,
      baseline_names=_BASELINE_NAMES.value, deltas=deltas, seed=_SEED.value,
      attention_fraction=_ATTENTION_FRACTION.value, min_attention=_MIN_ATTENTION.value,
      overwrite=_OVERWRITE.value)
  if _DISTRIBUTED.distributed.value:
    manifest = one_shard_per_host(build)
  else:
    cli.initialize_distributed(_DISTRIBUTED)  # refuses --process_id etc. without --distributed
    manifest = build(num_shards=_NUM_SHARDS.value, shard_index=_SHARD_INDEX.value)
  out = stimuli.shard_dir(_OUT_DIR.value, manifest["num_shards"], manifest["shard_index"])
  print(f"study {manifest['study_id']}: {manifest['num_main_trials']} of "
        f"{manifest['num_main_trials_total']} comparisons + {manifest['num_attention_trials']} "
        f"attention checks (vs {', '.join(manifest['methods'])}); open {out}/index.html")
  if manifest["unmatched"]:
    print(f"{len(manifest['unmatched'])} DFI edit(s) had no baseline, e.g. "
          f"{manifest['unmatched'][0]}")


def one_shard_per_host(build) -> dict:
  """Every host builds shard `process_index` of `process_count`; process 0 then writes the page
  linking them. A host that fails stops every host with its line."""
  import jax  # pylint: disable=import-outside-toplevel  # only multi-host runs need JAX
  from dfi_jax.dfi import sharding  # pylint: disable=import-outside-toplevel
  from dfi_jax.runs import hosts  # pylint: disable=import-outside-toplevel
  if _NUM_SHARDS.present or _SHARD_INDEX.present:
    raise ValueError("--distributed makes one shard per host; drop --num_shards and "
                     "--shard_index")
  cli.initialize_distributed(_DISTRIBUTED)
  manifest, error = None, None
  try:
    manifest = build(num_shards=jax.process_count(), shard_index=jax.process_index())
  except Exception as e:  # pylint: disable=broad-except  # re-raised by all_succeeded
    error = e
  hosts.all_succeeded(error)
  counts = sharding.gather_values([manifest["num_main_trials"],
                                   manifest["num_attention_trials"]])
  if jax.process_count() > 1 and sharding.is_writer():
    print(f"wrote {stimuli.write_shard_index(_OUT_DIR.value, manifest['study_id'], counts)}")
  return manifest


if __name__ == "__main__":
  cli.run_main(main)
