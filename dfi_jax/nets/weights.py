"""Native weights format: VGG16/VGG19 params plus the provenance that configures a run.

A weights file is a NumPy `.npz` archive (read with `allow_pickle=False`, so loading never
executes code) holding one array per parameter, keyed `conv3_1/kernel` (HWIO) and
`conv3_1/bias`, plus `__provenance__`: UTF-8 JSON with at least

  format         "dfi_jax-weights-v1"
  kind           "random" | "trained" | "ported"
  architecture   "vgg16" | "vgg19"  (files written before VGG16 support lack it: VGG19)
  description    one line a person reads in logs and outputs
  preprocessing  "torchvision" | "caffe"   (see model.preprocess)
  pooling        "floor" | "ceil"
  width          channel multiplier (1.0 = the real network)
  layers         conv layers present, in order
  made_by        the command that made the file

and whatever else the maker records (training settings, source file and sha256, measured edit
quality). Arrays may be stored as float16 to keep files small; they load as float32.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
from flax import traverse_util

from dfi_jax.base import files as files_lib
from dfi_jax.nets import model as model_lib
from dfi_jax.nets import networks

FORMAT = "dfi_jax-weights-v1"
REQUIRED = ("kind", "description", "preprocessing", "pooling", "width", "layers", "made_by")
_META_KEY = "__provenance__"
ASSET_DIR = Path(__file__).parents[1] / "assets"


class WeightsError(ValueError):
  """A weights file that is missing, unreadable or of the wrong kind."""


def architecture_of(provenance: dict) -> str:
  """The recorded architecture ("vgg16" | "vgg19"); files from before VGG16 support are VGG19."""
  return provenance.get("architecture", "vgg19")


def init_random(seed: int | jax.Array, width: float = 1.0, last_layer: str = "conv5_1",
                architecture: str = "vgg19") -> dict:
  """He-initialised VGG params (`architecture`) up to `last_layer` (zero biases), drawn with NumPy.

  Kernels follow Flax's `he_normal`: a normal truncated at ±2σ, scaled so the variance is
  2 / fan_in. NumPy rather than `jax.random`, which compiles a kernel per shape (seconds each
  on CPU). `seed` is an int or a JAX PRNG key.
  """
  if not isinstance(seed, int):
    seed = int(np.asarray(jax.random.key_data(seed)).ravel()[-1])
  rng = np.random.default_rng(seed)
  names = model_lib.conv_names(architecture)
  if last_layer not in names:
    raise ValueError(f"last_layer {last_layer!r} is not a conv of {architecture}: {names}")
  stop = names.index(last_layer)
  params, in_ch = {}, 3
  for name, base in model_lib.layout(architecture):
    if not base:
      continue
    out_ch = model_lib.channels(base, width)
    fan_in = 9 * in_ch
    z = rng.standard_normal((3, 3, in_ch, out_ch))
    while (bad := np.abs(z) > 2).any():
      z[bad] = rng.standard_normal(int(bad.sum()))
    std = np.sqrt(2.0 / fan_in) / 0.87962566103423978  # std of N(0,1) truncated at ±2
    params[name] = {"kernel": (z * std).astype(np.float32),
                    "bias": np.zeros((out_ch,), np.float32)}
    in_ch = out_ch
    if names.index(name) == stop:
      break
  return params


def provenance_for(kind: str, description: str, made_by: str, params: dict, *,
                   preprocessing: str = "torchvision", pooling: str = "floor",
                   width: float = 1.0, architecture: str = "vgg19", **extra: Any) -> dict:
  """A complete provenance record for `params` (layer name -> {kernel, bias}).

  Keyword-only builder; its keywords describe how the weights are used:
    `preprocessing`: the input normalisation ("torchvision" or "caffe");
    `pooling`: how max pooling rounds odd sizes ("floor" or "ceil");
    `width`: channel multiplier of the network (1.0 = VGG's own widths);
    `architecture`: "vgg19" or "vgg16" (`model.conv_names`);
    `extra`: further fields stored as given (e.g. source, sha256).
  """
  names = model_lib.conv_names(architecture)
  return dict(format=FORMAT, kind=kind, description=description, made_by=made_by,
              architecture=architecture, preprocessing=preprocessing, pooling=pooling,
              width=float(width), layers=[n for n in names if n in params], **extra)


def save_weights(path: str | os.PathLike, params: dict, provenance: dict,
                 dtype: str = "float32") -> Path:
  """Writes `params` and `provenance` atomically (temp file + rename) to `path`."""
  path = Path(path)
  missing = [k for k in REQUIRED if k not in provenance]
  if missing:
    raise WeightsError(f"provenance for {path} lacks {missing}")
  check_params(params, provenance, str(path))
  arrays = {f"{layer}/{name}": np.asarray(v, dtype=dtype)
            for layer, p in params.items() for name, v in p.items()}
  return write_npz(path, arrays, dict(provenance, format=FORMAT))


def write_npz(path: str | os.PathLike, arrays: dict, meta: dict) -> Path:
  """Writes `arrays` plus `meta` (JSON, key `__provenance__`) as one .npz, atomically."""
  path = Path(path)
  arrays = dict(arrays)
  arrays[_META_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  path.parent.mkdir(parents=True, exist_ok=True)
  files_lib.atomic_write_bytes(path, buffer.getvalue())
  return path


def read_npz(path: str | os.PathLike) -> tuple[dict, dict | None]:
  """Reads a `write_npz` file: `(float32 arrays by key, meta)`; meta is None without a record.

  Raises `OSError` or `ValueError` (with the reason) for a file that is not a readable .npz.
  """
  arrays, meta, _ = read_npz_pinned(path)
  return arrays, meta


def read_npz_pinned(path: str | os.PathLike) -> tuple[dict, dict | None, str]:
  """`read_npz`, plus the sha256 of the very bytes the arrays were read from: the file is read
  once, so a file replaced meanwhile cannot be recorded under another file's hash."""
  data = Path(path).read_bytes()
  try:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
      meta = (json.loads(npz[_META_KEY].tobytes().decode()) if _META_KEY in npz.files
              else None)
      arrays = {k: npz[k].astype(np.float32) for k in npz.files if k != _META_KEY}
  except (zipfile.BadZipFile, EOFError) as e:
    raise ValueError(str(e)) from None
  return arrays, meta, hashlib.sha256(data).hexdigest()


def save_tree(path: str | os.PathLike, params: dict, provenance: dict, fmt: str,
              required: Sequence[str], error: type[Exception], dtype: str) -> Path:
  """Writes a nested params tree (a Flax module's), stored as `dtype`, with `provenance` under
  format `fmt`, atomically; raises `error` when `provenance` lacks a `required` key."""
  path = Path(path)
  missing = [k for k in required if k not in provenance]
  if missing:
    raise error(f"provenance for {path} lacks {missing}")
  arrays = {"/".join(k): np.asarray(v, dtype)
            for k, v in traverse_util.flatten_dict(jax.device_get(params)).items()}
  return write_npz(path, arrays, dict(provenance, format=fmt))


def load_tree(path: str | os.PathLike, fmt: str, required: Sequence[str],
              error: type[Exception], what: str, command: str,
              missing_hint: str = "") -> tuple[dict, dict]:
  """`load_tree_pinned` without the file's sha256."""
  flat, meta, _ = load_tree_pinned(path, fmt, required, error, what, command, missing_hint)
  return flat, meta


def load_tree_pinned(path: str | os.PathLike, fmt: str, required: Sequence[str],
                     error: type[Exception], what: str, command: str,
                     missing_hint: str = "") -> tuple[dict, dict, str]:
  """Reads a `save_tree` file: `(flat params {key tuple: float32 array}, provenance)`, checked
  to be format `fmt` with every `required` provenance key. Raises `error` (one line naming
  `path`); `what` names the kind of file, `command` the one that makes it, `missing_hint` what
  to do when there is no file (default: make one with `command`)."""
  path = Path(path)
  made_by = f"expected a .npz made by `{command}`"
  if not path.exists():
    raise error(f"{what} file {path} not found: {missing_hint or made_by}")
  if not path.is_file():
    raise error(f"{what} file {path} is a directory: {made_by}")
  try:
    arrays, meta, sha256 = read_npz_pinned(path)
  except (OSError, ValueError) as e:
    raise error(f"{path} is not a readable dfi_jax {what} file ({e})") from None
  if meta is None:
    raise error(f"{path} is not a dfi_jax {what} file (no provenance record): {made_by}")
  if not isinstance(meta, dict):
    raise error(f"{path}: provenance record is a JSON {type(meta).__name__}, expected an "
                "object")
  if meta.get("format") != fmt:
    raise error(f"{path}: format {meta.get('format')!r}, expected {fmt!r} (a {what} from "
                f"`{command}`)")
  missing = [k for k in required if k not in meta]
  if missing:
    raise error(f"{path}: provenance lacks {missing}")
  bad = next((k for k, v in arrays.items() if not np.all(np.isfinite(v))), None)
  if bad is not None:  # NaN weights would turn every result into NaN or a constant, silently
    raise error(f"{path}: parameter {bad} holds NaN or infinite values; expected finite "
                f"numbers (remake the file with `{command}`)")
  return {tuple(k.split("/")): v for k, v in arrays.items()}, meta, sha256


def load_weights(path: str | os.PathLike) -> tuple[dict, dict]:
  """Reads a native weights file: `(params, provenance)`; params as float32 NumPy arrays."""
  params, meta, _ = load_weights_pinned(path)
  return params, meta


def load_weights_pinned(path: str | os.PathLike) -> tuple[dict, dict, str]:
  """`load_weights`, plus the sha256 of the bytes the params came from (read once)."""
  flat, meta, sha256 = load_tree_pinned(
      path, FORMAT, REQUIRED, WeightsError, "weights",
      "python -m experiments.train_features` or `python -m experiments.port_weights",
      missing_hint="put a dfi_jax weights file there (make one with `python -m "
      "experiments.train_features` or `python -m experiments.port_weights`)")
  params: dict = {}
  for key, value in flat.items():
    params.setdefault(key[0], {})["/".join(key[1:])] = value
  malformed = [k for k, ok in (  # model_for and the outputs read these
      ("layers", isinstance(meta["layers"], list) and meta["layers"]),
      ("width", isinstance(meta["width"], (int, float)) and meta["width"] > 0),
      ("pooling", meta["pooling"] in model_lib.POOLING),
      ("preprocessing", meta["preprocessing"] in model_lib.PREPROCESSING),
      ("description", isinstance(meta["description"], str)),
      ("architecture", meta.get("architecture", "vgg19") in networks.NETWORKS)) if not ok]
  if malformed:
    raise WeightsError(f"{path}: malformed provenance {malformed[0]}="
                       f"{meta.get(malformed[0])!r}; remake the file (experiments.port_weights)")
  check_params(params, meta, str(path))
  return params, meta, sha256


def params_sha256(params: dict) -> str:
  """A digest of the parameters themselves (names, shapes, float32 values), whatever the file's
  bytes (zip timestamps, stored dtype): what a file holds, compared by content."""
  digest = hashlib.sha256()
  for layer in sorted(params):
    for name in sorted(params[layer]):
      value = np.ascontiguousarray(params[layer][name], np.float32)
      digest.update(f"{layer}/{name}:{value.shape}".encode())
      digest.update(value.tobytes())
  return digest.hexdigest()


def check_params(params: dict, provenance: dict, where: str) -> None:
  """Checks that `params` is a prefix of the recorded architecture at the recorded width;
  names the first mismatch."""
  architecture = architecture_of(provenance)
  if architecture not in model_lib.ARCHITECTURES:
    raise WeightsError(f"{where}: architecture {architecture!r} is not one of "
                       f"{list(model_lib.ARCHITECTURES)}")
  label = architecture.upper()
  names = model_lib.conv_names(architecture)
  width = float(provenance["width"])
  present = [n for n in names if n in params]
  extra = sorted(set(params) - set(names))
  if extra:
    raise WeightsError(f"{where}: unexpected layers {extra}; expected {label} convs "
                       f"{list(names)}")
  if not present or present != list(names[:len(present)]):
    raise WeightsError(f"{where}: layers {present} are not a prefix of {label}'s {list(names)}")
  in_ch = 3
  for name, base in model_lib.layout(architecture):
    if name not in present:
      continue
    out_ch = model_lib.channels(base, width)
    want = {"kernel": (3, 3, in_ch, out_ch), "bias": (out_ch,)}
    for key, shape in want.items():
      got = tuple(np.shape(params[name].get(key, ())))
      if got != shape:
        raise WeightsError(f"{where}: {name}/{key} has shape {got}, expected {shape} "
                           f"({label} width {width})")
    in_ch = out_ch


def model_for(provenance: dict, taps=model_lib.DEFAULT_TAPS,
              pooling: str | None = None, preprocessing: str | None = None):
  """The module matching a weights file (its architecture's `networks.NETWORKS` entry, built
  with the file's width and conventions); overrides that differ are warned about."""
  import warnings
  chosen = {}
  for key, forced in (("pooling", pooling), ("preprocessing", preprocessing)):
    recorded = provenance[key]
    if forced is not None and forced != recorded:
      warnings.warn(f"{key}={forced!r} forced, but the weights were made for "
                    f"{key}={recorded!r}", stacklevel=2)
    chosen[key] = forced or recorded
  architecture = architecture_of(provenance)
  network = networks.network_for(architecture)
  names = network.taps
  foreign = [t for t in taps if t not in names]
  if foreign:
    raise WeightsError(f"taps {foreign} are not layers of {architecture.upper()} (the weights' "
                       f"architecture); its convs are {', '.join(names)}")
  deepest = provenance["layers"][-1]
  missing = [t for t in taps if t not in provenance["layers"]]
  if missing:
    raise WeightsError(f"taps {missing} need layers the weights lack (deepest: {deepest})")
  return network.build(provenance, tuple(taps), **chosen)
