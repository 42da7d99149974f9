"""Files written so a crash never leaves half an output: atomic writes (temp file beside the
target, then `os.replace`), output folders, the input-file checks every run makes first.

Temp files are named `.<name>.<random>.w<pid>@<host>.tmp`, so a later run can tell a dead
writer's leftovers (`stale_temp_writer`) from a live one's and from files that are not ours.
Images in and out: `data/image_io.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np


class InputError(ValueError):
  """An input path that is missing, not a regular file, or whose name is not valid UTF-8."""


def one_line(text: Any) -> str:
  return " ".join(str(text).split())


def check_utf8_name(path: str | os.PathLike, label: str | None = None) -> None:
  """Refuses a path whose name is not valid UTF-8: it could not be written into the run's JSON,
  HTML or CSV, and would fail only after all the work."""
  text = os.fspath(path)
  try:
    os.fsencode(text).decode("utf-8")
  except UnicodeDecodeError:
    shown = os.fsencode(text).decode("utf-8", "backslashreplace")
    label = os.fsencode(label).decode("utf-8", "backslashreplace") if label else shown
    raise InputError(f"{label}: the name '{shown}' is not valid UTF-8; rename it") from None


_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def check_input_file(path: str | os.PathLike, label: str | None = None) -> None:
  """Refuses, before any work, an input file that would hang or fail late.

  A missing path, a directory, anything but a regular file (reading a named pipe blocks forever,
  a device may never end) and a name that is not valid UTF-8 raise `InputError` naming `label`
  (default: the path). Symbolic links are followed.
  """
  text = os.fspath(path)
  label = label or text
  if not str(text).strip():
    raise InputError(f"{label}: empty path; expected a file")
  check_utf8_name(text, label)
  try:
    mode = os.stat(text).st_mode
  except OSError as e:
    raise InputError(f"{label}: cannot open ({e.strerror}); expected a readable file") from None
  if stat.S_ISDIR(mode):
    raise InputError(f"{label}: is a directory; expected a file")
  kind = next((what for test, what in _KINDS if test(mode)), None)
  if kind or not stat.S_ISREG(mode):
    raise InputError(f"{label}: is {kind or 'not a regular file'}; expected a regular file")


def _host() -> str:
  return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


_TEMP = re.compile(r"^\..*\.w(\d+)@([A-Za-z0-9-]+)\.tmp$")


def stale_temp_writer(name: str) -> bool:
  """Whether `name` is an `atomic_write_bytes` temp file whose writer (a process on this host)
  is dead: only those may be removed; a live writer's, another host's and a user's stay."""
  found = _TEMP.match(name)
  if not found or found.group(2) != _host():
    return False
  pid = int(found.group(1))
  if pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except (OSError, OverflowError):  # EPERM: alive, another user's
    return False
  return False


def temp_path_beside(path: Path) -> Path:
  """A fresh temp name in `path`'s folder, named for this writer; the file is not made.

  Writers make the file *inside* their cleanup's `try` (exclusive create), so an exception at
  any point — Ctrl-C or SIGTERM turned into one by the CLIs — finds the name to remove.
  (`tempfile.mkstemp` returns the name only after making the file: a signal in between left
  a stray temp file.)
  """
  # The name is cut so the temp name stays under the file system's 255 bytes.
  return path.parent / f".{path.name[:80]}.{secrets.token_hex(5)}.w{os.getpid()}@{_host()}.tmp"


class LinkError(InputError):
  """An output path that is a symbolic link: a run never writes through a link it did not make."""


def refuse_link(path: str | os.PathLike) -> None:
  """Raises `LinkError` (one line) when `path` itself is a symbolic link (dangling or not)."""
  if os.path.islink(path):
    raise LinkError(f"{os.fspath(path)}: is a symbolic link (to {os.readlink(path)}); a run "
                    "never writes through a link it did not make: remove the link or use "
                    "another output folder")


def make_folder(path: str | os.PathLike) -> Path:
  """The output folder `path` (made with its parents if missing); `LinkError` if it is a
  symbolic link, so a run never writes into a folder elsewhere that it did not make."""
  path = Path(path)
  refuse_link(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except FileExistsError:
    raise InputError(f"{path}: is a file; expected a folder the run writes into") from None
  return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` via a temp file in the same directory and `os.replace`.

  The temp file is removed on any failure (including a full disk, Ctrl-C or SIGTERM turned into
  an exception), leaving any previous file intact. A `path` that is a symbolic link is refused
  (`LinkError`), never written through nor replaced. A new file gets mode 0644; a replaced file
  keeps its mode.
  """
  path = Path(path)
  refuse_link(path)
  try:
    mode = path.stat().st_mode & 0o7777
  except OSError:
    mode = 0o644
  tmp = temp_path_beside(path)
  try:
    with open(tmp, "xb") as f:  # exclusive: never another writer's file
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
  except FileExistsError:  # the random name is taken: not ours to remove
    raise
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """`atomic_write_bytes` of `text` encoded as UTF-8."""
  atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(obj: Any) -> Any:
  """`obj` as JSON holds it: str keys, lists for tuples, Python numbers for NumPy scalars,
  None for NaN/infinity, dicts for dataclasses."""
  if isinstance(obj, dict):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [jsonable(v) for v in obj]
  if isinstance(obj, (np.floating, float)):
    return float(obj) if np.isfinite(obj) else None
  if isinstance(obj, np.integer):
    return int(obj)
  if dataclasses.is_dataclass(obj):
    return jsonable(dataclasses.asdict(obj))
  return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes `obj` as indented, key-sorted JSON; NaN/infinity raise `ValueError`, nothing written."""
  try:
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False)
  except (ValueError, TypeError) as e:  # NaN / infinity, or an object JSON cannot hold.
    raise type(e)(f"{os.fspath(path)}: cannot write JSON: {e}") from e
  atomic_write_text(path, text + "\n")


def restore_file(path: str | os.PathLike, data: bytes) -> bool:
  """A resumed run's check of an output it kept: rewrites `path` (atomically) unless it holds
  exactly `data`; a missing, truncated or altered file is named on stderr. True if it wrote."""
  path = Path(path)
  refuse_link(path)
  try:
    found = None if not stat.S_ISREG(os.lstat(path).st_mode) else path.read_bytes()
    why = "damaged or changed" if found != data else ""
  except FileNotFoundError:
    why = "missing"
  if not why:
    return False
  print(f"warning: {path} was {why}; rewritten from the run's kept results", file=sys.stderr,
        flush=True)
  atomic_write_bytes(path, data)
  return True
