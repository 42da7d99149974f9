"""One live run per workdir: the folder checked and held with a kernel lock (run_state, step 2).

`locked(workdir)` refuses an empty path, a non-empty folder that holds no dfi_jax run, and a
workdir a live run holds (an `fcntl.flock` on `.dfi_jax.lock`, released by the kernel when its
process dies, so a killed run leaves nothing stuck); it removes only dead writers' temp files
(`files_lib.stale_temp_writer`); if the run fails before writing anything, the folder it created
is removed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import Iterator, Sequence

from dfi_jax.base import run_state
from dfi_jax.base import files as files_lib
from dfi_jax.base.run_state import RunError

LOCK = ".dfi_jax.lock"


def _holder(fd: int) -> str:
  with contextlib.suppress(OSError, ValueError):
    os.lseek(fd, 0, os.SEEK_SET)
    return f"pid {int(os.read(fd, 32).decode().strip())}"
  return "pid unknown"


@contextlib.contextmanager
def hold_lock(path: Path, label: str, keep: bool = True) -> Iterator[None]:
  """An exclusive `flock` on `path` for the duration; refuses with one line while another
  process holds it. The kernel drops the lock when its holder dies, even by `kill -9`.

  `keep=False` removes the lock file on release; a waiter that opened it before then notices
  the file is gone (inode check) and locks the new one, so two holders never overlap.
  """
  for _ in range(5):
    try:  # O_NOFOLLOW: a lock file that is a link to a file elsewhere is never written through
      fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
      if os.path.islink(path):
        raise RunError(f"{label}: its lock file {path} is a symbolic link; a run never writes "
                       "through a link it did not make: remove the link") from None
      raise RunError(f"{label}: cannot create the lock file {path} ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
      os.close(fd)
      raise RunError(f"{label}: its lock file {path} is not a regular file; remove it")
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _holder(fd)
      os.close(fd)
      raise RunError(f"{label} is in use by another run ({holder}); wait for it to finish or "
                     "use another path") from None
    except OSError as e:  # a file system without locks (some network mounts): go on unguarded
      run_state.warn(f"{label}: cannot lock {path} ({e.strerror}); a second run at once would not be "
           "refused")
      break
    try:
      same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
      same = False
    if same:
      break
    os.close(fd)
  else:
    raise RunError(f"{label}: its lock file {path} keeps being replaced; try again")
  with contextlib.suppress(OSError):  # who holds it, for the refusal above (informational)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
  try:
    yield
  finally:
    if not keep:
      with contextlib.suppress(OSError):
        os.unlink(path)
    os.close(fd)


def _holds_a_run(path: Path, markers: Sequence[str]) -> bool:
  return (any((path / m).exists() for m in (run_state.MANIFEST, run_state.STATE_DIR, *markers))
          or any(path.glob(".dfi_jax*.lock")))


def _remove_if_unused(path: Path, lock: Path) -> None:
  """Removes a folder this process created if it holds nothing but empty folders and the lock."""
  for p in path.rglob("*"):
    if not p.is_dir() and p != lock:
      return
  for p in sorted(path.rglob("*"), key=lambda p: -len(p.parts)) + [path]:
    with contextlib.suppress(OSError):
      if p.is_dir():
        p.rmdir()
      else:
        p.unlink()


@contextlib.contextmanager
def locked(workdir: str | os.PathLike, flag: str = "workdir", markers: Sequence[str] = (),
           lock: str = LOCK) -> Iterator[Path]:
  """Holds `workdir` for this process (see the module docstring, step 2); yields its Path.

  `markers`: other file names that show a folder holds this tool's output (e.g. `bank.json`).
  `lock`: the lock file's name (`.dfi_jax*.lock`; one per host where hosts share a folder).
  """
  path = run_state.check_output_path(workdir, flag)
  label = f"--{flag}={path}"
  # The topmost folder this run makes (None: the workdir exists).
  created = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise RunError(f"{label}: cannot create it ({e.strerror})") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise RunError(f"{label}: not writable")
  if created is None and any(path.iterdir()) and not _holds_a_run(path, markers):
    raise RunError(f"{label} is a non-empty folder that holds no dfi_jax run; use a new or "
                   "empty folder")
  with hold_lock(path / lock, label):
    try:
      remove_stale_temp_files(path)
      yield path
    except BaseException:
      if created is not None:
        _remove_if_unused(created, path / lock)
      raise


def remove_stale_temp_files(workdir: Path) -> list[Path]:
  """Deletes the temp files of writers that died on this host (`kill -9` mid-write); a live
  writer's, another host's and any file not made by `files_lib.atomic_write_bytes` stay."""
  removed = []
  for p in Path(workdir).rglob(".*.tmp"):
    if files_lib.stale_temp_writer(p.name) and p.is_file():
      with contextlib.suppress(OSError):
        p.unlink()
        removed.append(p)
  return removed
