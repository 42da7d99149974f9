"""Many hosts: the one `jax.distributed` set-up, who writes, who does which item, gathering the
items (holding a run's workdir on every host is `runs.hosts`)."""

from __future__ import annotations

import os
import sys
import threading
from typing import NamedTuple, Sequence

import jax
import numpy as np

from dfi_jax.base import run_state


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


def is_writer() -> bool:
  """True on the one process that writes shared outputs and logs."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits for every host (a no-op on one)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def share(n: int) -> np.ndarray:
  """This host's items of `n`: `[m]` int, every `process_count`-th from `process_index` (the
  same split on every rerun with the same hosts, so each host finds its own finished items)."""
  return np.arange(jax.process_index(), n, jax.process_count())


def gather_items(mine: np.ndarray, arrays: Sequence[np.ndarray], axis: int = 0
                 ) -> list[np.ndarray]:
  """Every host's items, on every host: `arrays[i]` holds all items along `axis`, of which this
  host computed `mine` (`share(n)`); the result holds each item as its own host computed it.
  One host: returned unchanged. (64-bit integers travel as int32: JAX's default.)"""
  hosts = jax.process_count()
  if hosts == 1:
    return list(arrays)
  out = []
  for a in arrays:
    a = np.asarray(a)
    n, m = a.shape[axis], -(-a.shape[axis] // hosts)
    wire = np.int32 if a.dtype == np.int64 else a.dtype
    part = np.take(a, mine, axis=axis).astype(wire)
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, m - len(mine))
    every = gather_values(np.pad(part, pad))  # [hosts, ...]
    merged = a.copy()
    for p in range(hosts):
      theirs = np.arange(p, n, hosts)
      index = [slice(None)] * a.ndim
      index[axis] = theirs
      merged[tuple(index)] = np.take(every[p], np.arange(len(theirs)), axis=axis)
    out.append(merged)
  return out


def gather_values(values) -> np.ndarray:
  """Every host's `values` (the same shape and dtype on each), stacked: `[hosts, ...]`."""
  if jax.process_count() == 1:
    return np.asarray(values)[None]
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(np.asarray(values)))
