"""Inpaint a hole with DFI: `python -m experiments.inpaint --workdir=DIR [--config=FILE[:variant]]`.

Generated faces by default; a folder of images (shoes) with
`--config=experiments/configs/inpaint.py:shoes --config.bank_dir=DIR`. Writes DIR/grid.png
(input with hole | DFI | neighbour mean | truth), DIR/inpainted/*.png, DIR/index.html and
DIR/metrics.json with the RMSE inside the hole against the true image. Rerunning the same
command into the same workdir resumes.
"""

from dfi_jax.runs import inpaint
from experiments import cli

_RUN = cli.define_run_flags("experiments/configs/inpaint.py")


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  record = inpaint.run(_RUN.config.value, _RUN.workdir.value)
  s = record["summary"]
  print(f"data: {record['data']['note']}")
  print(f"RMSE inside the hole: DFI {s['rmse_dfi']:.4f}, neighbour mean "
        f"{s['rmse_neighbour_mean']:.4f}, grey fill {s['rmse_grey']:.4f}")


if __name__ == "__main__":
  cli.run_in_workdir(main, _RUN)
