"""High-resolution DFI edits: `python -m experiments.highres --workdir=DIR [--config=FILE]`.

Writes DIR/grid.png, one PNG per edit and DIR/metrics.json (counterfactual r, peak RSS, time).
"""

from absl import flags

from dfi_jax.runs import highres
from dfi_jax.base import run_state
from experiments import cli

_CONFIG = cli.define_config_file(
    "experiments/configs/highres.py", "Config file (FILE or FILE:variant).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  record = highres.run(_CONFIG.value, _WORKDIR.value)
  print(f"wrote {_WORKDIR.value}/grid.png; peak RSS {record['peak_rss_mb']:.0f} MB, "
        f"{record['timings']['total_s']:.0f} s")


if __name__ == "__main__":
  cli.run_main(main, kept=lambda: run_state.kept_message(_WORKDIR.value))
