"""The mesh and arrays on it: a bank's rows split along `data`, each host feeding its own rows."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


DATA = "data"


def make_mesh(shape: Sequence[int] = (-1,), axes: Sequence[str] = (DATA,),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over `devices` (default all, every host); one -1 in `shape` takes the rest.

  Axes are `Auto` (XLA propagates shardings), so unannotated library code runs unchanged.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = list(shape)
  if len(shape) != len(axes) or shape.count(-1) > 1:
    raise ValueError(f"mesh shape {shape} must match axes {list(axes)} with at most one -1")
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) != len(devices):
    raise ValueError(f"mesh shape {shape} needs {math.prod(shape)} devices, have "
                     f"{len(devices)}")
  grid = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(grid, tuple(axes), axis_types=(jax.sharding.AxisType.Auto,) * len(axes))


def padded_size(n: int, mesh: Mesh, axis: str = DATA) -> int:
  """`n` rounded up to a multiple of the `axis` size (padding rows are never candidates)."""
  return -(-n // mesh.shape[axis]) * mesh.shape[axis]


def shard_rows(rows: np.ndarray, mesh: Mesh, axis: str = DATA, fill=0) -> jax.Array:
  """A host array `[N, ...]` (the same on every host) as a global array split along `axis`,
  padded with `fill` to a multiple of the axis size. Each host copies only its devices' rows."""
  rows = np.asarray(rows)
  n = padded_size(len(rows), mesh, axis)
  spec = P(axis, *([None] * (rows.ndim - 1)))

  def piece(index):
    start, stop, _ = index[0].indices(n)
    out = rows[start:min(stop, len(rows))]
    if stop > len(rows):
      pad = np.full((stop - max(start, len(rows)),) + rows.shape[1:], fill, rows.dtype)
      out = np.concatenate([out, pad])
    return out[(slice(None),) + tuple(index[1:])]

  return jax.make_array_from_callback((n,) + rows.shape[1:], NamedSharding(mesh, spec), piece)


def rows_to_mesh(read: Callable[[int, int], np.ndarray], n: int, dim: int, mesh: Mesh,
                 axis: str = DATA, dtype=jnp.float32) -> jax.Array:
  """Rows [0, n) of a table that `read(start, stop) -> [stop - start, dim]` gives, as a global
  `[N_padded, dim]` array of `dtype` split along `axis` (zero padding rows). Each host calls
  `read` only for the rows of its own devices, once per device."""
  padded = padded_size(n, mesh, axis)

  def piece(index):
    start, stop, _ = index[0].indices(padded)
    out = np.zeros((stop - start, dim), dtype)
    hi = min(stop, n)
    if hi > start:
      out[:hi - start] = read(start, hi)
    return out

  return jax.make_array_from_callback((padded, dim), NamedSharding(mesh, P(axis, None)), piece)


def replicated(x, mesh: Mesh) -> jax.Array:
  """A host array (the same on every host) as a global array every device holds whole."""
  return jax.device_put(np.asarray(x), NamedSharding(mesh, P()))


# ---------------------------------------------------------------------------------------
# Many hosts: who does which item, gathering them, and holding a run's workdir.


def local_mesh(axis: str = DATA) -> Mesh:
  """A one-axis mesh over this host's devices (work that each host does on its own)."""
  return make_mesh(devices=jax.local_devices(), axes=(axis,))
