"""Train the independent attribute judge: `python -m experiments.train_judge --out=FILE.npz`.

Renders generated training faces at several sizes, trains dfi_jax/eval/judge.py's small CNN under
heavy augmentation (dfi_jax/eval/judge_train.py), measures it on held-out faces (accuracy per
attribute per size, with added noise, counterfactual flips, noise in the attribute's region) and
writes the judge file (atomically) with the command, seed ranges, settings, wall times, the
measurements and package versions in its provenance. Settings: experiments/configs/judge.py.
"""

import shlex
import sys
from pathlib import Path


from dfi_jax.eval import judge_train
from experiments import cli

_CONFIG = cli.define_config_file(
    "experiments/configs/judge.py", "Config file (FILE or FILE:variant).")
_OUT, _OVERWRITE = cli.define_output_file("Judge")


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  out = Path(_OUT.value)
  if out.suffix != ".npz":
    raise ValueError(f"--out={out}: expected a path ending in .npz")
  cli.check_new_output(out, _OVERWRITE.value)
  command = "python -m experiments.train_judge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  prov = judge_train.train_and_save(_CONFIG.value, out, command)
  print(judge_train.report(prov))
  print(f"wrote {out}")


if __name__ == "__main__":
  cli.run_main(main)
