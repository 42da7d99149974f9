"""Many hosts: who writes, who does which item, gathering the items (the one `jax.distributed`
set-up and holding a run's workdir on every host are the run's: `runs.hosts`)."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np



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
