"""Edit faces with DFI: `python -m experiments.transform --workdir=DIR [--config=FILE[:variant]]`.

  --inputs=a.jpg,b.png        edit your own images instead of held-out generated faces: each face
                              is found, aligned to the bank's frame, edited and pasted back
                              (`pip install -e '.[photos]'`; --config.align=none fits them whole)
  --attributes=eyeglasses,…   which edits (default: the config's six); older+eyeglasses is one
                              combined edit (the parts' w summed; own photos only)
  --config.FIELD=VALUE        override any config field (listed below with their defaults)
  --config.bank_dir=DIR       use a bank built by `python -m experiments.build_bank`
  --distributed               every host runs this command; each edits its share, process 0
                              writes the outputs (--coordinator_address, --num_processes,
                              --process_id where not auto-detected)
"""

from absl import flags

from dfi_jax.runs import edit as edit_run
from experiments import cli

_RUN = cli.define_run_flags("experiments/configs/synthetic.py")
_INPUTS = flags.DEFINE_list("inputs", [], "Image files to edit (any Pillow-readable image).")
_ATTRIBUTES = flags.DEFINE_list("attributes", [], "Attributes to add (default: config's); "
                                "a+b is one combined edit.")
_DISTRIBUTED = cli.define_distributed_flags()


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  cli.initialize_distributed(_DISTRIBUTED)
  record = edit_run.run(_RUN.config.value, _RUN.workdir.value, _INPUTS.value, _ATTRIBUTES.value)
  report(record, _RUN.workdir.value)


def report(record: dict, workdir: str) -> None:
  """Prints what the run `record` (edit_run.run's) wrote to `workdir`; raises ValueError (the
  command's one `error:` line, exit 1) naming every failed edit."""
  if not record.get("written", True):
    print(f"ran {len(record['outputs']['edits'])} edits here; process 0 wrote the outputs")
    return
  print(f"wrote {workdir}/grid.png, index.html, metrics.json "
        f"({len(record['outputs']['edits'])} edits) in {record['timings']['total_s']:.0f} s")
  if record["failures"]:
    raise ValueError(f"{len(record['failures'])} edit(s) failed: " + "; ".join(record["failures"]))


if __name__ == "__main__":
  cli.run_in_workdir(main, _RUN)
