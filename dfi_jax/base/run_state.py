"""Resumable runs: settings checked first, one live run per workdir, fingerprinted state.

The order every run follows, so a failure is one early line and never strands work:

1. `check_config` (every field) and the inputs' kind and name (`files_lib.check_input_file`),
   before anything is written.
2. `workdir_lock.locked(workdir)`: refuses an empty path, a non-empty folder that holds no dfi_jax run, and a
   workdir a live run holds (an `fcntl.flock` on `.dfi_jax.lock`, released by the kernel when
   its process dies, so a killed run leaves nothing stuck); removes only dead writers' temp
   files (`files_lib.stale_temp_writer`); if the run fails before writing anything, the folder
   it created is removed again.
3. `claim`: `run.json` records the fingerprint of everything that determines the results (the
   config, the weights file's sha256, the input files' sha256, the edits); another run's
   settings are refused with the fields that differ. The claim is written (`commit`) only with
   the run's first result, so a run that did no work leaves no claim behind.
4. Each finished item is kept as `state/<item>.npz` (its arrays and the fingerprint it was made
   with, written atomically) and is reused only under the same fingerprint, even with `run.json`
   gone; a damaged one is named on stderr and recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from dfi_jax.base import files as files_lib

MANIFEST = "run.json"
STATE_DIR = "state"


class RunError(ValueError):
  """A bad setting or input; the message is the one line a user sees."""


# --- settings ------------------------------------------------------------------------------


class Rule(NamedTuple):
  """What one config field must be: `ok(value)`, else `expected` names it for the user."""
  ok: Callable[[Any], bool]
  expected: str


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
          and math.isfinite(v))


def integer(low: int | None = None, high: int | None = None) -> Rule:
  bounds = (f" >= {low}" if high is None else f" in [{low}, {high}]") if low is not None else ""
  return Rule(lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high),
              "a positive integer" if (low, high) == (1, None) else f"an integer{bounds}")


def number(low: float | None = None, high: float | None = None, open_low: bool = False) -> Rule:
  def ok(v):
    return (_is_number(v) and (low is None or (v > low if open_low else v >= low))
            and (high is None or v <= high))
  bound = "" if low is None else f" {'>' if open_low else '>='} {low:g}"
  if high is not None:
    bound += f"{' and' if bound else ''} <= {high:g}"
  return Rule(ok, f"a finite number{bound}")


def choice(options: Sequence) -> Rule:
  return Rule(lambda v: isinstance(v, (str, int)) and v in tuple(options),
              f"one of {tuple(options)}")


def text() -> Rule:
  return Rule(lambda v: isinstance(v, str), "a string")


def boolean() -> Rule:
  return Rule(lambda v: isinstance(v, (bool, np.bool_)), "True or False")


def numbers(low: float | None = None, open_low: bool = False, tag=str) -> Rule:
  """A non-empty list of finite numbers, no two alike once formatted by `tag` (file names)."""
  item = number(low, open_low=open_low)
  def ok(v):
    return (isinstance(v, (tuple, list)) and len(v) > 0 and all(item.ok(d) for d in v)
            and len({tag(d) for d in v}) == len(v))
  return Rule(ok, f"a non-empty list of {item.expected[2:].replace('number', 'numbers')}, "
              "each given once")


def names(options: Sequence[str] | None = None, allow_empty: bool = False) -> Rule:
  """A list of distinct strings (from `options` when given)."""
  def ok(v):
    return (isinstance(v, (tuple, list)) and (allow_empty or len(v) > 0)
            and all(isinstance(n, str) and n and (options is None or n in options) for n in v)
            and len(set(v)) == len(v))
  among = f" among {tuple(options)}" if options is not None else ""
  return Rule(ok, f"a {'' if allow_empty else 'non-empty '}list of distinct names{among}")


def split_lists(config):
  """`--config.taps=a,b` arrives as the one-element tuple ('a,b'): `config` with such strings
  split (a copy when any is; `config` itself is never changed)."""
  split = {}
  for field in ("taps", "attributes", "test_names"):
    value = config.get(field)
    if isinstance(value, (tuple, list)) and any(isinstance(v, str) and "," in v for v in value):
      split[field] = tuple(p.strip() for v in value for p in str(v).split(",") if p.strip())
  if not split:
    return config
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.update(split)
  return config


def check_config(config, rules: dict[str, Rule]) -> None:
  """Checks every field of `config` that `rules` names; raises RunError naming the first bad one.

  Fields `rules` does not name are left to their readers (dataset loaders check their own).
  """
  for field, rule in rules.items():
    if field not in config:
      continue
    value = config[field]
    if not rule.ok(value):
      shown = list(value) if isinstance(value, tuple) else value
      raise RunError(f"--config.{field}={shown!r}: expected {rule.expected}")


def check_unique(names: Sequence[str], what: str) -> None:
  """Refuses two items that would write one file (compared case-insensitively, as macOS and
  Windows file systems compare names)."""
  seen: dict[str, str] = {}
  for n in names:
    key = n.casefold()
    if key in seen:
      raise RunError(f"{what}: {seen[key]!r} and {n!r} would write the same file; "
                     "each must be given once")
    seen[key] = n


# --- the workdir ---------------------------------------------------------------------------


def check_output_path(value: str | os.PathLike | None, flag: str) -> Path:
  """`--flag`'s path, refusing an empty one (it would write into the current directory) and a
  name that is not valid UTF-8 (it could not be written into the run's outputs)."""
  raw = "" if value is None else os.fspath(value)
  if not str(raw).strip():
    raise RunError(f"--{flag} is empty; expected a path (an empty one would write into the "
                   "current directory)")
  try:
    files_lib.check_utf8_name(raw, f"--{flag}")
  except files_lib.InputError as e:
    raise RunError(str(e)) from None
  try:  # the shell leaves `--workdir=~/x` alone: without this, a folder named `~` is made
    return Path(raw).expanduser()
  except RuntimeError:
    raise RunError(f"--{flag}={raw}: cannot find the home folder '{raw.split('/')[0]}' names; "
                   "give the path without ~") from None


def kept_message(workdir: str | os.PathLike) -> str:
  """What an interrupted run leaves for the next one, in words."""
  n = sum(1 for _ in Path(workdir).glob(f"**/{STATE_DIR}/*.npz")) if str(workdir) else 0
  if not n:
    return "no finished item was kept"
  return f"{n} finished item(s) kept under {workdir}; the same command resumes from them"


# --- the claim -----------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def describe(settings: dict, weights_sha256: str, inputs: Sequence[str], edits: Sequence,
             inputs_sha256: Sequence[str] | None = None) -> dict:
  """What determines a run's results (JSON-able). `weights_sha256` and `inputs_sha256` are the
  hashes of the bytes the run read (`weights.load_weights_pinned`, `check_unchanged`), never
  of the files as they are now; inputs without them are hashed here."""
  if inputs_sha256 is None:
    inputs_sha256 = [file_sha256(p) for p in inputs]
  return dict(settings=settings, weights_sha256=weights_sha256,
              inputs=[dict(path=str(p), sha256=h) for p, h in zip(inputs, inputs_sha256)],
              edits=[list(e) for e in edits])


def check_unchanged(paths: Sequence[str], sha256: Sequence[str], flag: str) -> None:
  """Refuses files that changed since they were hashed (`sha256`, taken before they were read):
  the run would record one file's hash for another file's content."""
  for path, before in zip(paths, sha256):
    if file_sha256(path) != before:
      raise RunError(f"{flag}={path}: the file changed while this run read it; rerun once it "
                     "is no longer being written")


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


class Claim(NamedTuple):
  """A workdir claimed for one run: its description, that description's fingerprint, and
  whether `run.json` already recorded it (resuming)."""
  workdir: Path
  description: dict
  fingerprint: str
  resuming: bool


def warn(message: str) -> None:
  print(f"warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


def claim(workdir: Path, description: dict) -> Claim:
  """Checks `description` against the run `workdir` records (see the module docstring, step 3).

  Writes nothing. Raises RunError naming the differing fields for another run's settings.
  """
  path = workdir / MANIFEST
  described = json.loads(json.dumps(description))  # tuples -> lists, as stored
  resuming = False
  if path.exists():
    try:
      old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
      warn(f"{path} is damaged ({e}); replacing it (finished items under {STATE_DIR}/ are "
           "reused only if they were made with these settings)")
      old = described
    if old != described and _unordered(old) == _unordered(described):
      described = old  # the same attributes in another order: the same run, its items valid
    if old != described:
      a, b = _flatten(old), _flatten(described)
      diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
      shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:4])
      raise RunError(f"--workdir={workdir} holds a run with other settings ({shown}"
                     f"{', …' if len(diff) > 4 else ''}); use a new --workdir")
    resuming = True
  fingerprint = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
  return Claim(workdir, described, fingerprint, resuming)


def _unordered(description) -> Any:
  """`description` with its attributes and edits sorted (their order changes no result)."""
  if not isinstance(description, dict):
    return description
  out = dict(description)
  settings = out.get("settings")
  if isinstance(settings, dict) and isinstance(settings.get("attributes"), list):
    out["settings"] = dict(settings, attributes=sorted(map(str, settings["attributes"])))
  if isinstance(out.get("edits"), list):
    out["edits"] = sorted(out["edits"], key=json.dumps)
  return out


def commit(run: Claim) -> None:
  """Records the claim in `run.json` unless it is there: called before a run's first output."""
  path = run.workdir / MANIFEST
  with contextlib.suppress(OSError, ValueError):
    if json.loads(path.read_text()) == run.description:
      return
  files_lib.atomic_write_json(path, run.description)


# --- state ---------------------------------------------------------------------------------


def state_path(workdir: Path, item: str) -> Path:
  return workdir / STATE_DIR / f"{item}.npz"


def read_state_file(path: Path, shapes: dict[str, tuple]) -> dict | None:
  """The arrays of a state file with these keys and shapes; None if absent. A damaged file (not
  a readable .npz, or other keys or shapes) is named on stderr and treated as absent, so the
  item is recomputed and the file replaced."""
  if not path.exists():
    return None
  try:
    with np.load(path, allow_pickle=False) as npz:
      found = {k: npz[k] for k in npz.files}
    bad = [k for k, shape in shapes.items()
           if k not in found or (shape is not None and found[k].shape != tuple(shape))]
    if bad:
      raise ValueError(f"{bad[0]!r} missing or of another shape")
  except Exception as e:  # pylint: disable=broad-except  # any damage: zip, zlib, EOF, format
    warn(f"{path} is damaged ({type(e).__name__}: {e}); recomputing it")
    return None
  return found


def load_state(run: Claim, item: str, shapes: dict[str, tuple]) -> dict | None:
  """A finished item's arrays if it was made under `run`'s fingerprint, else None."""
  found = read_state_file(state_path(run.workdir, item), dict(shapes, fingerprint=()))
  if found is None or str(found.pop("fingerprint")) != run.fingerprint:
    return None
  return found


def save_state(run: Claim, item: str, **arrays: np.ndarray) -> None:
  """Keeps a finished item (with the fingerprint it was made under), atomically."""
  commit(run)
  buffer = io.BytesIO()
  np.savez(buffer, fingerprint=np.asarray(run.fingerprint), **arrays)
  path = state_path(run.workdir, item)
  files_lib.make_folder(path.parent)
  files_lib.atomic_write_bytes(path, buffer.getvalue())


def load_result(run: Claim, item: str, size: int) -> dict | None:
  """A finished reverse map's `{image [size, size, 3] float32, loss, evaluations}`, or None."""
  return load_state(run, item, dict(image=(size, size, 3), loss=(), evaluations=()))


def save_result(run: Claim, item: str, image: np.ndarray, loss: float, evaluations: int) -> None:
  save_state(run, item, image=np.asarray(image, np.float32), loss=np.float32(loss),
             evaluations=np.int64(evaluations))
