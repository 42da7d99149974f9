"""The counterfactual benchmark: `python -m experiments.evaluate --workdir=DIR`.

Runs the edit on held-out generated faces (`synthetic.py:eval`: 8 faces that lack all six
attributes, seeds never used by the bank or for training the default weights) and prints, per
attribute, DFI's r = ‖edit − x_cf‖ / ‖x − x_cf‖ inside the attribute's region and the mean
absolute change outside it, next to the pixel-space baseline's. Also writes `DIR/table.md`.
`--distributed` (with `--config.bank_dir` or not): every host runs the same command and edits
its share; process 0 writes the outputs and the table.
"""

from dfi_jax.runs import edit as edit_run
from dfi_jax.base import files as files_lib
from dfi_jax.eval import metrics
from experiments import cli

_RUN = cli.define_run_flags("experiments/configs/synthetic.py:eval")
_DISTRIBUTED = cli.define_distributed_flags()

COLUMNS = (("judge_success", "judge success"), ("judge_preservation", "judge preservation"),
           ("outside", "DFI change outside"), ("r", "DFI r in region"),
           ("baseline_judge_success", "pixel: judge success"),
           ("baseline_judge_preservation", "pixel: judge preservation"),
           ("baseline_outside", "pixel change outside"), ("baseline_r", "pixel r in region"),
           ("judge_prefers_dfi", "judge prefers DFI (2AFC)"),
           ("judge_prefers_truth", "judge prefers truth (2AFC)"),
           ("probe_success", "probe success"), ("probe_preservation", "probe preservation"))


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  cli.initialize_distributed(_DISTRIBUTED)
  record = edit_run.run(_RUN.config.value, _RUN.workdir.value)
  if not record.get("written", True):  # another host writes the table
    return
  weights = record["weights"]["provenance"]["description"]
  parts = [f"Weights: {weights}\n"]
  for delta, summary in record["summary"].items():
    parts.append(f"δ = {delta[1:]} ({len(record['images'])} held-out faces)\n\n"
                 + metrics.table_markdown(summary, COLUMNS) + "\n")
  table = "\n".join(parts)
  files_lib.atomic_write_text(f"{_RUN.workdir.value}/table.md", table)
  print(table)


if __name__ == "__main__":
  cli.run_in_workdir(main, _RUN)
