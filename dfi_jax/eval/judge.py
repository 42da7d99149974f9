"""An independent attribute judge: a small CNN that says which of the six attributes a face has.

It scores edits the way the perceptual study would ask: did the edit add the attribute
(*success*), and did it keep the others (*preservation*)? Unlike the counterfactual error r
(metrics.py) it does not punish an edit for being another plausible face with the attribute, and
unlike a probe on φ it shares nothing with DFI's feature net: its own convolutions, trained from
scratch with optax on generated faces (`judge_train.py`) under heavy augmentation (shifts,
scale, rotation, flips, colour jitter, blur, down-up sampling, JPEG-like blocks, pixel noise,
patches of high-frequency colour noise, and colour noise inside an attribute's region with the
label kept), so colour noise where DFI paints does not read as the attribute.

Architecture (`_Judge`): `len(channels)` 3x3 convolutions, stride 2 at even layers and 1 at odd
ones, each followed by GroupNorm (8 groups or fewer) and a ReLU; then the per-channel mean and max
over space, concatenated, and one dense layer to 6 logits (sigmoid: multi-label). Inputs of any
square size are first resized to `INPUT_SIZE`² (`resize`: linear with antialiasing), so a face
rendered at 64², 96² or 128² gets the same verdict; the judge was trained on faces rendered at
those sizes and resized the same way.

A judge file is a `.npz` like a weights file (`weights.write_npz`, read with
`allow_pickle=False`, so loading never runs code): one array per parameter, keyed
`conv0/kernel`, plus `__provenance__` JSON with `format` "dfi_jax-judge-v1", `attributes`,
`input_size`, `channels` and whatever the maker records (the command that remakes it, seed
ranges, training settings, held-out accuracy). The shipped judge is `DEFAULT_JUDGE`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from dfi_jax.data import faces
from dfi_jax.nets import weights as weights_lib

FORMAT = "dfi_jax-judge-v1"
REQUIRED = ("attributes", "input_size", "channels", "made_by")
ATTRIBUTES: tuple[str, ...] = faces.ATTRIBUTES
INPUT_SIZE = 64
GROUPS = 8  # GroupNorm groups (fewer when a width is not a multiple)
DEFAULT_JUDGE = weights_lib.ASSET_DIR / "judge.npz"
DEFAULT = "default"  # the `judge` setting naming the shipped judge ('' = no judge)


def path_for(setting: str) -> str:
  """The judge file a run's `judge` setting names: the shipped one for `default`, else itself."""
  return str(DEFAULT_JUDGE) if setting == DEFAULT else setting


class JudgeError(ValueError):
  """A judge file that is missing, unreadable or of the wrong kind."""


class _Judge(nn.Module):
  channels: tuple[int, ...]
  num_outputs: int = len(ATTRIBUTES)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = x * 2.0 - 1.0
    for i, c in enumerate(self.channels):
      stride = 2 if i % 2 == 0 else 1
      h = nn.Conv(c, (3, 3), strides=(stride, stride), name=f"conv{i}")(h)
      h = nn.GroupNorm(num_groups=math.gcd(GROUPS, c), name=f"norm{i}")(h)
      h = nn.relu(h)
    pooled = jnp.concatenate([h.mean((1, 2)), h.max((1, 2))], axis=-1)
    return nn.Dense(self.num_outputs, name="head")(pooled)


def init(seed: int, channels: Sequence[int]) -> dict:
  """Random params of a judge with conv widths `channels`, drawn with NumPy from `seed`.

  Flax's default initialisers (kernels LeCun normal: a normal truncated at ±2σ with variance
  1 / fan_in; biases zero; GroupNorm scales one), drawn with NumPy: `jax.random` under jit costs
  ~15 s of CPU compilation here.
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name != "kernel":
      return np.full(leaf.shape, 1.0 if name == "scale" else 0.0, np.float32)
    z = rng.standard_normal(leaf.shape)
    while (bad := np.abs(z) > 2).any():
      z[bad] = rng.standard_normal(int(bad.sum()))
    std = np.sqrt(1.0 / np.prod(leaf.shape[:-1])) / 0.87962566103423978  # std of N(0,1) on ±2
    return (z * std).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, param_shapes(channels))


def param_shapes(channels: Sequence[int]) -> dict:
  """The `jax.ShapeDtypeStruct` tree of a judge's params with conv widths `channels`."""
  channels = tuple(int(c) for c in channels)
  if not channels or min(channels) <= 0:
    raise ValueError(f"channels must be a non-empty sequence of positive ints, got {channels}")
  dummy = jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  return jax.eval_shape(lambda: _Judge(channels).init(jax.random.key(0), dummy))["params"]


def channels_of(params: dict) -> tuple[int, ...]:
  """The conv widths of a judge's params (its architecture)."""
  n = sum(1 for k in params if k.startswith("conv"))
  return tuple(int(params[f"conv{i}"]["kernel"].shape[-1]) for i in range(n))


def resize(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """`[B, H, W, 3]` -> `[B, size, size, 3]` float32 (linear, antialiased when shrinking)."""
  images = jnp.asarray(images, jnp.float32)
  if images.shape[1:3] == (size, size):
    return images
  return jax.image.resize(images, (images.shape[0], size, size, images.shape[3]),
                          method="linear", antialias=True)


def logits(params: dict, images: jax.Array) -> jax.Array:
  """`[B, INPUT_SIZE, INPUT_SIZE, 3]` float32 in [0, 1] -> `[B, 6]` float32 logits (no resize)."""
  return _Judge(channels_of(params)).apply({"params": params}, images)


@jax.jit
def _predict(params: dict, images: jax.Array) -> jax.Array:
  return jax.nn.sigmoid(logits(params, resize(images)))


def check_images(images, name: str = "images") -> None:
  """Raises ValueError unless `images` is `[B, S, S, 3]` (any square size S >= 8)."""
  shape = np.shape(images)
  if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or shape[1] < 8:
    raise ValueError(f"{name} must be [B, S, S, 3] with square S >= 8, got shape {shape}")


def predict(params: dict, images, batch_size: int = 256) -> np.ndarray:
  """The judge's probability of each attribute (a jitted resize + forward pass per batch).

  Args:
    params: a judge's params (`init` or `load`).
    images: `[B, S, S, 3]` float in [0, 1], any square size S >= 8 (resized to `INPUT_SIZE`²).
    batch_size: images per jitted call; batches are padded to a power of two (at least 8) so
      that few shapes compile.

  Returns:
    `[B, 6]` float32 probabilities, columns in `ATTRIBUTES` order (present iff > 0.5).
  """
  check_images(images)
  images = np.asarray(images, np.float32)
  parts = []
  for i in range(0, len(images), batch_size):
    chunk = images[i:i + batch_size]
    padded = max(8, 1 << (len(chunk) - 1).bit_length())
    chunk = np.concatenate([chunk, np.zeros((padded - len(chunk),) + chunk.shape[1:],
                                            np.float32)])
    parts.append(np.asarray(_predict(params, jnp.asarray(chunk)))[:len(images[i:i + batch_size])])
  return np.concatenate(parts) if parts else np.zeros((0, len(ATTRIBUTES)), np.float32)


def accuracy(params: dict, images, labels) -> dict[str, float]:
  """Per-attribute accuracy of `predict` (p > 0.5) on `images` `[N, S, S, 3]` against `labels`
  `[N, 6]` bool; key `mean` is their mean."""
  correct = (predict(params, images) > 0.5) == np.asarray(labels, bool)
  out = {a: float(v) for a, v in zip(ATTRIBUTES, correct.mean(0))}
  out["mean"] = float(correct.mean())
  return out


# --- scoring edits ----------------------------------------------------------------------------

def score_edits(params: dict, inputs, edits, added: Sequence[str]) -> list[dict]:
  """The judge's verdict on each edit.

  Args:
    params: a judge's params.
    inputs: `[B, S, S, 3]` float in [0, 1], the images before editing.
    edits: `[B, S', S', 3]` float in [0, 1], the edited images (any square size).
    added: B attribute names from `ATTRIBUTES`, the attribute each edit should add.

  Returns:
    One record per edit: `attribute`; `success` (bool: the judge's probability of the added
    attribute on the edit is > 0.5) and that `probability`; `input_probability` of the added
    attribute on the input; `preservation`, the fraction of the other five attributes whose
    judged label (p > 0.5) is the same on the edit as on the input; `changed`, the names of those
    that differ.
  """
  added = list(added)
  check_images(inputs, "inputs")
  check_images(edits, "edits")
  if not (len(inputs) == len(edits) == len(added)):
    raise ValueError(f"inputs, edits and added must have one entry per edit, got "
                     f"{len(inputs)}, {len(edits)} and {len(added)}")
  unknown = sorted({a for a in added if a not in ATTRIBUTES})
  if unknown:
    raise ValueError(f"unknown attribute(s) {unknown} in added; valid: {list(ATTRIBUTES)}")
  before, after = predict(params, inputs), predict(params, edits)
  records = []
  for b, a in enumerate(added):
    col = ATTRIBUTES.index(a)
    others = [i for i in range(len(ATTRIBUTES)) if i != col]
    same = [(before[b, i] > 0.5) == (after[b, i] > 0.5) for i in others]
    records.append(dict(
        attribute=a, success=bool(after[b, col] > 0.5), probability=float(after[b, col]),
        input_probability=float(before[b, col]), preservation=float(np.mean(same)),
        changed=[ATTRIBUTES[i] for i, s in zip(others, same) if not s]))
  return records


def choice(first: dict, second: dict) -> float:
  """The judge-scored two-alternative choice between two edits of one face (`score_edits`
  rows): 1.0 for `first`, 0.0 for `second`, 0.5 for a tie. An edit that keeps every other
  attribute beats one that does not; otherwise the higher probability of the added one wins."""
  keeps_first, keeps_second = first["preservation"] == 1.0, second["preservation"] == 1.0
  if keeps_first != keeps_second:
    return float(keeps_first)
  if first["probability"] == second["probability"]:
    return 0.5
  return float(first["probability"] > second["probability"])


def summarise(records: Sequence[dict]) -> dict[str, dict]:
  """Per added attribute (in `ATTRIBUTES` order): `count`, `success_rate`, `mean_probability`
  and `mean_preservation` of `score_edits` records."""
  out = {}
  for a in ATTRIBUTES:
    mine = [r for r in records if r["attribute"] == a]
    if mine:
      out[a] = dict(count=len(mine),
                    success_rate=float(np.mean([r["success"] for r in mine])),
                    mean_probability=float(np.mean([r["probability"] for r in mine])),
                    mean_preservation=float(np.mean([r["preservation"] for r in mine])))
  return out


# --- files ------------------------------------------------------------------------------------

def provenance_for(params: dict, made_by: str, **extra: Any) -> dict:
  """A provenance record for `params` (architecture, attribute order, the making command)."""
  return dict(format=FORMAT, attributes=list(ATTRIBUTES), input_size=INPUT_SIZE,
              channels=list(channels_of(params)), made_by=made_by, **extra)


def save(path: str | os.PathLike, params: dict, provenance: dict,
         dtype: str = "float16") -> Path:
  """Writes `params` (stored as `dtype`) and `provenance` atomically (temp file + rename)."""
  return weights_lib.save_tree(path, params, provenance, FORMAT, REQUIRED, JudgeError, dtype)


def load(path: str | os.PathLike | None = None) -> tuple[dict, dict]:
  """Reads a judge file (default: the shipped `DEFAULT_JUDGE`): `(params, provenance)`, params
  as float32 NumPy arrays. Raises `JudgeError` (one line) for a file that is not a judge."""
  path = Path(DEFAULT_JUDGE if path is None else path)
  flat, meta = weights_lib.load_tree(path, FORMAT, REQUIRED, JudgeError, "judge",
                                     "python -m experiments.train_judge")
  if meta["attributes"] != list(ATTRIBUTES) or meta["input_size"] != INPUT_SIZE:
    raise JudgeError(f"{path}: made for attributes {meta['attributes']!r} at "
                     f"{meta['input_size']!r}², expected {list(ATTRIBUTES)} at {INPUT_SIZE}²")
  channels = meta["channels"]
  if not (isinstance(channels, list) and channels and all(
      isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)):
    raise JudgeError(f"{path}: malformed provenance channels={channels!r}; expected a "
                     "non-empty list of positive integers (remake it with "
                     "`python -m experiments.train_judge`)")
  want = traverse_util.flatten_dict(param_shapes(channels))
  if {k: v.shape for k, v in want.items()} != {k: v.shape for k, v in flat.items()}:
    raise JudgeError(f"{path}: parameters do not match the recorded channels {meta['channels']}")
  return traverse_util.unflatten_dict(flat), meta
