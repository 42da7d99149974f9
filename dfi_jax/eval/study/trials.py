"""The study's trials: main trials paired and shuffled, attention checks (scrambled images),
shards, and the study's id."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np


class StudyError(ValueError):
  """A missing or malformed input; the message is the one line a user sees."""


class Stimulus(NamedTuple):
  """One image a rater may see. `run` is '' for images from a baseline folder."""
  run: str
  image: str
  attribute: str
  method: str          # "dfi" or the baseline's name
  delta: float | None  # DFI's δ; None for baselines
  path: Path


def main_trials(dfi: Sequence[Stimulus], baselines: Sequence[Stimulus],
                seed: int) -> tuple[list[dict], list[str]]:
  """Pairs each DFI edit with every baseline of the same image and attribute.

  A run's own baselines match only that run's edits; folder baselines match any run. Trials are
  numbered in a fixed order (attribute, image, run, δ, method) and each gets DFI's side from
  `np.random.default_rng(seed)`, so every host builds the same list. Returns the trials and one
  line per DFI edit that found no baseline of some method.
  """
  by_key: dict[tuple, Stimulus] = {}
  for b in baselines:
    key = (b.run, b.image, b.attribute, b.method)
    if key in by_key:
      raise StudyError(f"two baselines for {key[1]} / {key[2]} / {key[3]}: "
                       f"{by_key[key].path} and {b.path}")
    by_key[key] = b
  methods = sorted({b.method for b in baselines})
  rng = np.random.default_rng(seed)
  trials, unmatched = [], []
  for s in sorted(dfi, key=lambda s: (s.attribute, s.image, s.run, s.delta)):
    for m in methods:
      other = by_key.get((s.run, s.image, s.attribute, m)) or by_key.get(
          ("", s.image, s.attribute, m))
      if other is None:
        unmatched.append(f"{s.run}: {s.image} / {s.attribute} / δ={s.delta:g}: no {m} baseline")
        continue
      dfi_left = bool(rng.random() < 0.5)
      left, right = (s, other) if dfi_left else (other, s)
      trials.append(dict(
          id=f"m{len(trials):05d}", kind="main", attribute=s.attribute, image=s.image,
          run=s.run, delta=s.delta, baseline=m, left_method=left.method,
          right_method=right.method, dfi_side="left" if dfi_left else "right",
          correct_side=None, left_source=str(left.path), right_source=str(right.path)))
  return trials, unmatched


def shard_trials(trials: Sequence[dict], num_shards: int, shard_index: int) -> list[dict]:
  """Every `num_shards`-th trial from `shard_index`: shards are disjoint and cover the list."""
  if num_shards < 1 or not 0 <= shard_index < num_shards:
    raise StudyError(f"--shard_index={shard_index} --num_shards={num_shards}: expected "
                     "0 <= shard_index < num_shards")
  return list(trials[shard_index::num_shards])


def scramble(image: np.ndarray, rng: np.random.Generator, tiles: int = 6) -> np.ndarray:
  """`[H, W, 3]` image cut into `tiles`×`tiles` blocks put back in a random (non-identity) order.

  The result has the image's shape, so the foil cannot be told apart by its size.
  """
  h, w = image.shape[0] // tiles, image.shape[1] // tiles
  if h < 1 or w < 1:
    raise StudyError(f"image of shape {image.shape} is too small to scramble into {tiles}² tiles")
  blocks = [image[i * h:(i + 1) * h, j * w:(j + 1) * w]
            for i in range(tiles) for j in range(tiles)]
  order = np.arange(len(blocks))
  while np.array_equal(order, np.arange(len(blocks))):
    order = rng.permutation(len(blocks))
  rows = [np.concatenate([blocks[order[i * tiles + j]] for j in range(tiles)], axis=1)
          for i in range(tiles)]
  foil = image.copy()  # strips left over when tiles does not divide the size stay as they were
  foil[:tiles * h, :tiles * w] = np.concatenate(rows, axis=0)
  return foil


def num_attention(num_main: int, fraction: float, minimum: int) -> int:
  return max(minimum, math.ceil(fraction * num_main)) if num_main else 0


def shard_dir(out_dir: str | os.PathLike, num_shards: int, shard_index: int) -> Path:
  """`out_dir` itself for one shard, else `out_dir/shard_<k>_of_<n>`."""
  out_dir = Path(out_dir)
  return out_dir if num_shards == 1 else out_dir / f"shard_{shard_index:03d}_of_{num_shards:03d}"


def study_id(trials: Sequence[dict], seed: int) -> str:
  """A short id of the whole (unsharded) main-trial list: the same on every host."""
  digest = hashlib.sha256()
  for t in trials:
    fields = [t["id"], t["run"], t["image"], t["attribute"], t["delta"], t["baseline"],
              t["dfi_side"]]
    for side in ("left_source", "right_source"):
      fields.append(hashlib.sha256(Path(t[side]).read_bytes()).hexdigest())
    digest.update(json.dumps(fields).encode())
  digest.update(str(seed).encode())
  return digest.hexdigest()[:12]
