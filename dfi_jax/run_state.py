"""Resumable runs: a workdir's settings fingerprint, finished items, and stale temp files.

`run.json` in the workdir records the fingerprint of everything that determines the results
(the config, the weights file's sha256, the input files' sha256, the edits). A rerun with the
same fingerprint skips finished items: each finished reverse map is kept as
`state/<image>__<edit>__d<δ>.npz` (the float result, its loss and evaluation count,
written atomically), so the next δ can
warm-start from it and its PNG is re-encoded from identical numbers. A rerun with other
settings is refused with the fields that differ.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from dfi_jax import image_io

MANIFEST = "run.json"
STATE_DIR = "state"


def file_sha256(path: str | os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def describe(settings: dict, weights_path: str, inputs: Sequence[str], edits: Sequence) -> dict:
  """What determines a run's results (JSON-able)."""
  return dict(settings=settings, weights_sha256=file_sha256(weights_path),
              inputs=[dict(path=str(p), sha256=file_sha256(p)) for p in inputs],
              edits=[list(e) for e in edits])


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def claim(workdir: Path, description: dict) -> bool:
  """Records `description` in a new workdir, or checks it matches the one there.

  Returns True when resuming. Raises ValueError naming the differing fields otherwise.
  """
  path = workdir / MANIFEST
  described = json.loads(json.dumps(description))  # tuples -> lists, as stored
  if path.exists():
    try:
      old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(f"{path} is unreadable ({e}); use a new --workdir") from None
    if old != described:
      a, b = _flatten(old), _flatten(described)
      diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
      shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:4])
      raise ValueError(f"--workdir={workdir} holds a run with other settings ({shown}"
                       f"{', …' if len(diff) > 4 else ''}); use a new --workdir")
    return True
  image_io.atomic_write_json(path, described)
  return False


def remove_stale_temp_files(workdir: Path) -> list[Path]:
  """Deletes temp files a killed run left behind (`.<name>.<random>.tmp`)."""
  removed = []
  for p in workdir.rglob(".*.tmp"):
    if p.is_file():
      p.unlink()
      removed.append(p)
  return removed


def state_path(workdir: Path, item: str) -> Path:
  return workdir / STATE_DIR / f"{item}.npz"


def load_result(workdir: Path, item: str) -> dict | None:
  """A finished item's `{image [H, W, 3] float32, loss, evaluations}`, or None."""
  path = state_path(workdir, item)
  if not path.exists():
    return None
  with np.load(path, allow_pickle=False) as npz:
    return {k: npz[k] for k in npz.files}


def save_result(workdir: Path, item: str, image: np.ndarray, loss: float,
                evaluations: int) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, image=np.asarray(image, np.float32), loss=np.float32(loss),
           evaluations=np.int64(evaluations))
  path = state_path(workdir, item)
  path.parent.mkdir(parents=True, exist_ok=True)
  image_io.atomic_write_bytes(path, buffer.getvalue())
