"""Analyse the perceptual study: response files → preference ratios per edit (paper Table 1).

  python -m experiments.study_analyze --study=runs/study --responses=responses/ \
      --out_dir=runs/study/analysis

  --study=DIR,…       study folders (their trials.json, or shard_*/trials.json below)
  --responses=P,…     exported response files (.csv/.json) or folders of them, any number of raters
  --threshold=0.8     raters with a lower attention-check accuracy (or none answered) are dropped
  --bootstrap_unit=rater   resample raters rather than single responses for the 95 % CIs

Writes analysis.json, analysis.md and preference.png into --out_dir (a non-empty one only with
--overwrite).
"""

from absl import flags

from dfi_jax.eval.study import analysis
from experiments import cli

_STUDY = flags.DEFINE_list("study", None, "Study folders or trials.json files.", required=True)
_RESPONSES = flags.DEFINE_list("responses", None, "Response files or folders.", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write the analysis.", required=True)
_THRESHOLD = flags.DEFINE_float("threshold", 0.8, "Least attention-check accuracy kept.")
_NUM_RESAMPLES = flags.DEFINE_integer("num_resamples", 2000, "Bootstrap resamples.")
_SEED = flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
_UNIT = flags.DEFINE_enum("bootstrap_unit", "response", ["response", "rater"],
                          "What the bootstrap resamples (rater: raters with all their answers).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the files of a non-empty --out_dir.")


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  if not 0 <= _THRESHOLD.value <= 1 or _NUM_RESAMPLES.value < 1:
    raise ValueError(f"--threshold={_THRESHOLD.value} --num_resamples={_NUM_RESAMPLES.value}: "
                     "expected a fraction in [0, 1] and a positive count")
  cli.check_new_folder(_OUT_DIR.value, _OVERWRITE.value)
  study = analysis.load_study(_STUDY.value)
  responses = []
  for f in analysis.response_files(_RESPONSES.value):
    responses += analysis.read_responses(f)
  result = analysis.analyse(study, responses, threshold=_THRESHOLD.value,
                            num_resamples=_NUM_RESAMPLES.value, seed=_SEED.value,
                            unit=_UNIT.value)
  paths = analysis.write(result, _OUT_DIR.value)
  print(analysis.table_markdown(result), end="")
  print(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")
  if not result["edits"]:
    raise ValueError("no responses left to analyse (every rater was dropped, or none answered "
                     "a comparison)")


if __name__ == "__main__":
  cli.run_main(main)
