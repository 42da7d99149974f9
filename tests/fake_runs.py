"""A fake transform run (tiny distinct PNGs, `metrics.json`) and baseline folder, for tests/demos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io


def fake_run(run_dir: str | os.PathLike, images: Sequence[str], attributes: Sequence[str],
             deltas: Sequence[float] = (1.0,), baseline_dir: str | os.PathLike | None = None,
             size: int = 24, seed: int = 0) -> Path:
  """Writes what `experiments.transform` writes for the study: `edits/` and `metrics.json`.

  Every image is a different random colour field, so no two share content. With
  `baseline_dir`, also writes `<baseline_dir>/<image>__<attribute>.png` for each pair.
  """
  run_dir = Path(run_dir)
  (run_dir / "edits").mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  edits, per_image = [], []
  for d in deltas:
    for a in attributes:
      for name in images:
        rel = f"edits/{name}__{a}__d{d:g}.png"
        image_io.save_png(run_dir / rel, rng.random((size, size, 3), dtype=np.float32))
        edits.append(rel)
        per_image.append(dict(image=name, attribute=a, delta=float(d)))
  if baseline_dir is not None:
    Path(baseline_dir).mkdir(parents=True, exist_ok=True)
    for a in attributes:
      for name in images:
        image_io.save_png(Path(baseline_dir) / f"{name}__{a}.png",
                          rng.random((size, size, 3), dtype=np.float32))
  files_lib.atomic_write_json(run_dir / "metrics.json", dict(
      images=list(images), per_image=per_image, failures=[],
      settings=dict(attributes=list(attributes), deltas=[float(d) for d in deltas]),
      outputs=dict(grid="grid.png", edits=sorted(edits), index="index.html")))
  return run_dir
