"""Sweep a setting and draw the figure: `python -m experiments.sweep --workdir=DIR --axis=tv_beta:1,1.5,2,2.5`.

  --axis2=k:10,50,100     a second field (rows)
  --attributes=older,…    which edits (default: the config's)
Any `--config.FIELD=VALUE` applies to every setting. Writes DIR/sweep_<attribute>.png.
"""

from absl import flags

from dfi_jax.runs import sweep
from experiments import cli

_RUN = cli.define_run_flags("experiments/configs/synthetic.py")
_AXIS = flags.DEFINE_string("axis", None, "FIELD:V1,V2,… (columns).", required=True)
_AXIS2 = flags.DEFINE_string("axis2", None, "FIELD:V1,V2,… (rows), optional.")
_ATTRIBUTES = flags.DEFINE_list("attributes", [], "Attributes to add (default: config's).")


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  axis2 = sweep.parse_axis(_AXIS2.value) if _AXIS2.value else None
  for path in sweep.run_sweep(_RUN.config.value, _RUN.workdir.value, sweep.parse_axis(_AXIS.value),
                              axis2, _ATTRIBUTES.value):
    print(f"wrote {path}")


if __name__ == "__main__":
  cli.run_in_workdir(main, _RUN)
