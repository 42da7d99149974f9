"""High-resolution DFI edits: `python -m experiments.highres --workdir=DIR [--config=FILE]`.

Writes DIR/grid.png, one PNG per edit and DIR/metrics.json (counterfactual r, peak RSS, time).
"""

from dfi_jax.runs import highres
from experiments import cli

_RUN = cli.define_run_flags("experiments/configs/highres.py")


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  record = highres.run(_RUN.config.value, _RUN.workdir.value)
  print(f"wrote {_RUN.workdir.value}/grid.png; peak RSS {record['peak_rss_mb']:.0f} MB, "
        f"{record['timings']['total_s']:.0f} s")


if __name__ == "__main__":
  cli.run_in_workdir(main, _RUN)
