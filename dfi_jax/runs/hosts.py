"""A run on many hosts: the one `jax.distributed` set-up (`initialize`), its workdir held on
every host (`hold_workdir`), and a failure on one host told to every other (`all_succeeded`)
instead of leaving them waiting in a collective.

The same command runs on every host; `dfi.sharding` holds what the computation needs of many
hosts (who writes, each host's share, gathering), these the run's side: the flags' wording, the
run's lock files and its RunError lines.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import jax
import numpy as np

from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from dfi_jax.dfi.sharding import gather_values


class DistributedSettings(NamedTuple):
  """What `jax.distributed.initialize` needs; None fields are auto-detected (TPU pods, SLURM,
  Open MPI, Kubernetes jobs set them in the environment)."""
  coordinator_address: str | None = None  # "host0:1234"
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: Sequence[int] | None = None
  timeout_s: float = 300.0  # every host must have joined by then


def initialize(enabled: bool, settings: DistributedSettings = DistributedSettings()) -> None:
  """All multi-host set-up: `jax.distributed.initialize` when `enabled`, else nothing.

  Call it before anything touches a device; the same command then runs on every host. A host
  that never joins (not started, a wrong address, a firewall) ends every waiting process after
  `settings.timeout_s` with one line and exit 1: JAX's own timeout aborts the process with a
  C++ stack trace, so a watchdog thread exits first (the wait releases the GIL).
  """
  if not enabled:
    return
  timeout = settings.timeout_s

  def give_up():
    where = settings.coordinator_address or "the auto-detected coordinator"
    print(f"error: --distributed: not every host joined {where} within {timeout:g} s "
          f"(process {settings.process_id if settings.process_id is not None else '?'} of "
          f"{settings.num_processes or '?'}); start the same command on every host, check "
          "--coordinator_address, or raise --distributed_timeout", file=sys.stderr, flush=True)
    os._exit(1)  # pylint: disable=protected-access  # no clean way out of JAX's C++ wait

  watchdog = threading.Timer(timeout, give_up)
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(coordinator_address=settings.coordinator_address,
                               num_processes=settings.num_processes,
                               process_id=settings.process_id,
                               local_device_ids=settings.local_device_ids,
                               initialization_timeout=int(timeout) + 60)
  except (RuntimeError, ValueError) as e:  # e.g. nothing to auto-detect the settings from
    raise run_state.RunError(f"--distributed: {type(e).__name__}: {e}") from None
  finally:
    watchdog.cancel()


MESSAGE_BYTES = 1000  # of a failed host's error line, told to the others


def all_succeeded(error: BaseException | None) -> None:
  """A collective: every host passes its error or None; every host raises if any failed (its
  own error unchanged, or a RunError naming the host that failed and its line). One host:
  raises `error` if there is one."""
  if jax.process_count() == 1:
    if error is not None:
      raise error
    return
  line = ("" if error is None else str(error) if isinstance(error, run_state.RunError)
          else f"{type(error).__name__}: {error}")
  message = np.zeros(MESSAGE_BYTES + 1, np.uint8)
  message[0] = error is not None
  encoded = " ".join(line.split()).encode()[:MESSAGE_BYTES]
  message[1:1 + len(encoded)] = np.frombuffer(encoded, np.uint8)
  every = gather_values(message)  # [hosts, 1 + MESSAGE_BYTES]
  if error is not None:
    raise error
  failed = np.flatnonzero(every[:, 0])
  if failed.size:
    p = int(failed[0])
    text = bytes(every[p, 1:]).rstrip(b"\0").decode(errors="replace")
    raise run_state.RunError(f"process {p} stopped: {text}")


class Held(NamedTuple):
  """A workdir held by this process; call `agree()` once set-up has succeeded on this host."""
  path: Path
  agree: Callable[[], None]


def host_lock(process_index: int) -> str:
  """The lock file a process holds in a shared folder: process 0 the run's own lock (so no other
  run, one host or many, uses the folder at once), every other process its own."""
  return workdir_lock.LOCK if process_index == 0 else f".dfi_jax.host{process_index}.lock"


@contextlib.contextmanager
def hold_workdir(workdir, flag: str = "workdir",
                 check: Callable[[], None] | None = None) -> Iterator[Held]:
  """`workdir_lock.locked(workdir)` for a run that every host starts with the same command, after
  `check()` (the settings and inputs, before anything is written).

  One host: exactly `workdir_lock.locked`; `agree` does nothing. Many hosts: process 0 takes the
  folder first (it creates it and holds `.dfi_jax.lock`), then every other process holds
  `.dfi_jax.host<i>.lock` in its view of the folder — the same folder on a shared file system,
  its own otherwise — and writes there only the items it computes. A refusal on any host stops
  every host with one line, as does a failed `check`. Until every host has called `agree()`
  (after its own set-up: settings claimed, bank checked), an error on one host is told to the
  others, which raise it too, instead of waiting forever in the next collective for a host that
  has stopped.
  """
  if jax.process_count() == 1:
    if check is not None:
      check()
    with workdir_lock.locked(workdir, flag) as path:
      yield Held(path, lambda: None)
    return
  error = None
  try:
    if check is not None:
      check()
  except Exception as e:  # pylint: disable=broad-except  # told to every host, re-raised
    error = e
  all_succeeded(error)
  me = jax.process_index()
  with contextlib.ExitStack() as stack:
    path = None
    for turn in (0, 1):  # process 0 first: the others then find the folder it made
      error = None
      if (me == 0) == (turn == 0):
        try:
          path = stack.enter_context(workdir_lock.locked(workdir, flag, lock=host_lock(me)))
        except Exception as e:  # pylint: disable=broad-except  # told to every host, re-raised
          error = e
      all_succeeded(error)
    agreed = [False]

    def agree():
      agreed[0] = True
      all_succeeded(None)

    try:
      yield Held(path, agree)
    except Exception as e:  # pylint: disable=broad-except
      if not agreed[0]:
        agreed[0] = True
        all_succeeded(e)
      raise
