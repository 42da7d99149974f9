"""Parameter sweeps (the paper's Figs 7-8): one edit run per setting, one labelled figure.

Each setting runs into its own sub-workdir (`<workdir>/<field>=<value>[,<field2>=<value2>]`),
so an interrupted sweep resumes like any run; the figure `<workdir>/sweep_<attribute>.png` has
one row per test image (and per value of a second field) and one column per value.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Sequence

import numpy as np

from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from dfi_jax.outputs import figures
from dfi_jax.data import image_io
from dfi_jax.outputs import names as output_names
from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock


def parse_axis(text: str) -> tuple[str, list]:
  """`"tv_beta:1,1.5,2"` -> ("tv_beta", [1, 1.5, 2])."""
  field, sep, values = text.partition(":")
  if not sep or not field or not values:
    raise ValueError(f"sweep axis {text!r}: expected FIELD:V1,V2,… e.g. tv_beta:1,2")
  parsed = []
  for v in values.split(","):
    try:
      parsed.append(ast.literal_eval(v))
    except (ValueError, SyntaxError):
      raise ValueError(f"sweep axis {text!r}: {v!r} is not a number") from None
  return field, parsed


def _with(config, overrides: dict):
  c = config.copy_and_resolve_references()
  for field, value in overrides.items():
    if field not in c:
      raise ValueError(f"sweep field {field!r} is not a config field")
    with c.unlocked():
      c[field] = tuple([value]) if field == "deltas" else type(c[field])(value)
  return c


def run_sweep(config, workdir: str | Path, axis: tuple[str, list],
              axis2: tuple[str, list] | None = None, attributes: Sequence[str] = ()) -> list[Path]:
  """Runs every setting and writes one figure per attribute; returns the figure paths.

  Every setting is built and checked before the first run starts, and the sweep's folder is
  held for this process (workdir_lock.locked); each setting's run resumes like any edit run.
  """
  rows_axis = axis2 or ("", [None])
  run_state.check_unique([f"{axis[0]}={v}" for v in axis[1]], "--axis")
  if axis2:
    run_state.check_unique([f"{axis2[0]}={v}" for v in axis2[1]], "--axis2")
  run_state.check_unique(list(attributes), "--attributes")
  settings = {}
  for v2 in rows_axis[1]:
    for v in axis[1]:
      overrides = {axis[0]: v, **({rows_axis[0]: v2} if axis2 else {})}
      name = ",".join(f"{k}={val}" for k, val in overrides.items())
      settings[(v2, v)] = (name, _with(config, overrides))
      kit.validate(settings[(v2, v)][1])
      kit.check_memory(settings[(v2, v)][1])
      kit.check_inputs(settings[(v2, v)][1])
      kit.read_bank_manifest(settings[(v2, v)][1])  # a bank built for every setting
  with workdir_lock.locked(workdir) as held:
    return _figures(config, held, axis, rows_axis, attributes, settings)


def _figures(config, workdir: Path, axis, rows_axis, attributes, settings) -> list[Path]:
  axis2 = rows_axis if rows_axis[0] else None
  results = {}
  for key, (name, sub_config) in settings.items():
    print(f"sweep: {name}", flush=True)
    record = edit_run.run(sub_config, workdir / name, (), attributes)
    results[key] = (workdir / name, record)
  first = next(iter(results.values()))[1]
  written = []
  for attribute in first["settings"]["attributes"]:
    rows, row_labels = [], []
    for image in first["images"]:
      for v2 in rows_axis[1]:
        row = []
        for v in axis[1]:
          sub, record = results[(v2, v)]
          edits = [e for e in record["outputs"]["edits"]
                   if output_names.parse_edit_name(e)[:2] == (image, attribute)]
          row.append(image_io.load_image(sub / edits[0]) if edits else
                     np.ones((config.image_size, config.image_size, 3), np.float32))
        rows.append(row)
        row_labels.append(image + (f" {rows_axis[0]}={v2}" if axis2 else ""))
    path = workdir / f"sweep_{attribute}.png"
    figures.save_grid(path, rows, row_labels=row_labels,
                      col_labels=[f"{axis[0]}={v}" for v in axis[1]])
    written.append(path)
  return written
