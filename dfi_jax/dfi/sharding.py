"""Many devices and many hosts: the mesh, a bank sharded along it, KNN and reverse maps on it.

The bank's leading axis `N` is split over the mesh axis `data` (`NamedSharding(mesh,
P("data", None))`); queries and their results are replicated. Nearest neighbours are a
per-device top-k followed by one all-gather of `[B, devices·k]` candidates and a global top-k,
which gives exactly the single-device answer, ties included: `lax.top_k` keeps the lower
position first among equal keys, and the gathered candidates of equal key sit in bank-index
order (device blocks in order, each block in index order). Neighbour means are summed on the
device that holds each row and reduced with one `psum` of `[B, D]`: the bank is never gathered.
Reverse maps are data-parallel: the batch axis of `z` and the targets is split over `data`, the
weights replicated, and `reconstruct.ReverseMap`'s compiled code partitioned by XLA.

Multi-host: `initialize` is the one place that calls `jax.distributed.initialize`; after it,
`jax.devices()` spans every host, each host feeds only the rows its own devices hold
(`bank_to_mesh` / `rows_to_mesh` read just those rows), and only `is_writer()` (process 0)
writes outputs. An edit run searches the bank on the mesh of every host's devices, then each
host reverse-maps its `share` of the items on its own devices (`local_mesh`), `gather_items`
collects them on every host, and process 0 writes. `hold_workdir` holds a run's folder on every
host and makes a failure during set-up on one host stop them all with its line.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dfi_jax.dfi import bank as bank_lib
from dfi_jax.dfi import reconstruct
from dfi_jax import run_state
from dfi_jax.dfi.neighbours import Neighbours

DATA = "data"
METRICS = ("l2", "hamming")


class DistributedSettings(NamedTuple):
  """What `jax.distributed.initialize` needs; None fields are auto-detected (TPU pods, SLURM,
  Open MPI, Kubernetes jobs set them in the environment)."""
  coordinator_address: str | None = None  # "host0:1234"
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: Sequence[int] | None = None


def initialize(enabled: bool, settings: DistributedSettings = DistributedSettings()) -> None:
  """All multi-host set-up: `jax.distributed.initialize` when `enabled`, else nothing.

  Call it before anything touches a device; the same command then runs on every host.
  """
  if enabled:
    jax.distributed.initialize(coordinator_address=settings.coordinator_address,
                               num_processes=settings.num_processes,
                               process_id=settings.process_id,
                               local_device_ids=settings.local_device_ids)


def is_writer() -> bool:
  """True on the one process that writes shared outputs and logs."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits for every host (a no-op on one)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


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


def mesh_from_config(config) -> Mesh:
  """`config.mesh_shape` / `config.mesh_axes` (defaults: every device on one `data` axis)."""
  return make_mesh(tuple(config.get("mesh_shape", (-1,))),
                   tuple(config.get("mesh_axes", (DATA,))))


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


def bank_to_mesh(bank: bank_lib.DiskBank, mesh: Mesh, what: str = "search",
                 axis: str = DATA, dtype=jnp.float32) -> jax.Array:
  """An on-disk bank's search features (`what="search"`) or φ (`"phi"`) as a global
  `[N_padded, d]` array split along `axis`; each host reads only the rows of its own devices."""
  if what not in ("search", "phi"):
    raise ValueError(f"what must be 'search' or 'phi', got {what!r}")
  read = bank_lib.read_search if what == "search" else bank_lib.read_phi
  dim = (bank.manifest["feature_dim"] if what == "phi" or bank.search.kind == "none"
         else bank.manifest["search"]["dim"])
  return rows_to_mesh(lambda a, b: read(bank, a, b), bank.num_images, dim, mesh, axis, dtype)


def replicated(x, mesh: Mesh) -> jax.Array:
  """A host array (the same on every host) as a global array every device holds whole."""
  return jax.device_put(np.asarray(x), NamedSharding(mesh, P()))


# ---------------------------------------------------------------------------------------
# KNN.


def _local_first_k(key: jax.Array, index: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """`[B, n]` keys (inf = not a candidate) -> the k smallest as (-key, global index)."""
  values, pos = jax.lax.top_k(-key, min(k, key.shape[-1]))
  return values, index[pos]


def _merge(values: jax.Array, index: jax.Array, k: int, axis: str) -> jax.Array:
  """Per-device `[B, k]` candidates -> global `[B, k]` indices, lowest index first on ties."""
  values = jax.lax.all_gather(values, axis, axis=1, tiled=True)  # device order = index order
  index = jax.lax.all_gather(index, axis, axis=1, tiled=True)
  _, pos = jax.lax.top_k(values, k)
  return jnp.take_along_axis(index, pos, axis=1).astype(jnp.int32)


def make_knn(mesh: Mesh, k: int, metric: str = "l2", axis: str = DATA) -> Callable:
  """A jitted sharded KNN; keep it: batches of the same shape reuse its compiled code.

  Returns `knn(bank, queries, source, target, exclude, allowed) -> Neighbours` with
    bank: `[N, d]` (float search features for `l2`, bool attributes for `hamming`), split
      along `axis` (see `shard_rows` / `bank_to_mesh`; N a multiple of the axis size);
    queries: `[B, d]`; source, target: `[N]` bool candidate masks (False on padding rows);
    exclude: `[B]` int32 bank index of each query itself, or -1;
    allowed: `[B, N]` bool per-query restriction (all True for none).
  Equal to `neighbours.feature_neighbours` (`l2`) / `attribute_neighbours` (`hamming`).
  """
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
  if k <= 0:
    raise ValueError(f"k must be positive, got {k}")

  def local(bank, queries, source, target, exclude, allowed):
    n = bank.shape[0]
    index = jax.lax.axis_index(axis) * n + jnp.arange(n)
    if metric == "l2":
      # The same expression as neighbours.feature_neighbours, so distances agree bit for bit.
      bank = bank.astype(jnp.float32)
      bank_sq = jnp.sum(bank * bank, axis=-1)
      distance = jax.vmap(lambda q: bank_sq - 2.0 * bank @ q + jnp.sum(q * q))(
          queries.astype(jnp.float32))
    else:
      distance = jax.vmap(lambda q: jnp.sum(bank != q, axis=-1).astype(jnp.float32))(queries)
    ok = allowed & (index[None] != exclude[:, None])
    out = []
    for mask in (source, target):
      key = jnp.where(ok & mask[None], distance, jnp.inf)
      out.append(_merge(*_local_first_k(key, index, k), k, axis))
    return tuple(out)

  sharded = jax.shard_map(local, mesh=mesh,
                          in_specs=(P(axis, None), P(), P(axis), P(axis), P(), P(None, axis)),
                          out_specs=(P(), P()), check_vma=False)

  @jax.jit
  def knn(bank, queries, source, target, exclude, allowed):
    return Neighbours(*sharded(bank, queries, source, target, exclude, allowed))

  return knn


def neighbours(knn: Callable, mesh: Mesh, bank: jax.Array, queries, source, target,
               exclude=None, allowed=None, axis: str = DATA) -> Neighbours:
  """Calls `knn` (from `make_knn`) with host arrays padded and placed for the mesh.

  `source`, `target`: `[N]` bool; `exclude`: `[B]` or None; `allowed`: `[B, N]` or None.
  """
  n = bank.shape[0]
  queries = np.asarray(queries)
  if queries.ndim != 2 or queries.shape[1] != bank.shape[1]:
    raise ValueError(f"queries must be [B, {bank.shape[1]}] for a bank {bank.shape}, got "
                     f"{queries.shape}")
  if np.shape(source) != np.shape(target) or not n - mesh.shape[axis] < len(source) <= n:
    raise ValueError(f"source and target must be [N] masks with N <= {n} (the bank's rows "
                     f"before padding), got {np.shape(source)}, {np.shape(target)}")
  b = queries.shape[0]
  pad = lambda m: np.pad(np.asarray(m, bool), [(0, n - np.shape(m)[-1])] if np.ndim(m) == 1
                         else [(0, 0), (0, n - np.shape(m)[-1])])
  exclude = np.full((b,), -1, np.int32) if exclude is None else np.asarray(exclude, np.int32)
  allowed = np.ones((b, n), bool) if allowed is None else pad(allowed)
  return knn(bank, replicated(queries, mesh),
             jax.device_put(pad(source), NamedSharding(mesh, P(axis))),
             jax.device_put(pad(target), NamedSharding(mesh, P(axis))),
             replicated(exclude, mesh),
             jax.device_put(allowed, NamedSharding(mesh, P(None, axis))))


# ---------------------------------------------------------------------------------------
# Neighbour means where the rows live.


def make_attribute_vector(mesh: Mesh, axis: str = DATA) -> Callable:
  """Jitted `w(bank [N, D] split along axis, neighbours) -> [B, D]` float32 replicated:
  mean bank[target] − mean bank[source], each device adding the rows it holds (one K-step
  loop of `[B, D]` gathers), then one psum. Memory per device: `[B, D]`, whatever K."""

  def local(bank, source, target):
    n = bank.shape[0]
    offset = jax.lax.axis_index(axis) * n

    def total(idx):
      def body(j, acc):
        i = idx[:, j] - offset
        mine = (i >= 0) & (i < n)
        rows = bank[jnp.clip(i, 0, n - 1)].astype(jnp.float32)
        return acc + jnp.where(mine[:, None], rows, 0.0)
      return jax.lax.fori_loop(0, idx.shape[1], body,
                               jnp.zeros((idx.shape[0], bank.shape[1]), jnp.float32))

    w = (total(target) - total(source)) / target.shape[1]
    return jax.lax.psum(w, axis)

  sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(axis, None), P(), P()),
                          out_specs=P(), check_vma=False)
  return jax.jit(lambda bank, nb: sharded(bank, nb.source, nb.target))


# ---------------------------------------------------------------------------------------
# Reverse maps, data-parallel.


def reverse_maps(reverse_map: reconstruct.ReverseMap, mesh: Mesh, params, targets, z0,
                 iterations: int, progress: Callable[[int], None] | None = None,
                 axis: str = DATA) -> reconstruct.ReverseMapResult:
  """`reverse_map` on a batch split over `axis`: `targets` `[B, D]`, `z0` `[B, H, W, 3]`.

  B is padded (repeating the last image) to a multiple of the axis size; params are
  replicated. Same shapes, same compiled code: keep `reverse_map` and the batch size fixed.
  `mesh` holds this host's devices only (`local_mesh`): `ReverseMap.__call__` reads its results
  back with `np.asarray`, so on many hosts each maps its own items (`share`, `gather_items`).
  """
  targets, z0 = np.asarray(targets, np.float32), np.asarray(z0, np.float32)
  b = len(z0)
  pad = padded_size(b, mesh, axis) - b
  if pad:
    targets = np.concatenate([targets, np.repeat(targets[-1:], pad, 0)])
    z0 = np.concatenate([z0, np.repeat(z0[-1:], pad, 0)])
  split = lambda x: jax.device_put(x, NamedSharding(mesh, P(axis, *([None] * (x.ndim - 1)))))
  params = jax.device_put(params, NamedSharding(mesh, P()))
  result = reverse_map(params, split(targets), split(z0), iterations, progress)
  return result._replace(images=result.images[:b], loss=result.loss[:b],
                         finite=result.finite[:b], evaluations=result.evaluations[:b])


# ---------------------------------------------------------------------------------------
# Many hosts: who does which item, gathering them, and holding a run's workdir.


def local_mesh(axis: str = DATA) -> Mesh:
  """A one-axis mesh over this host's devices (work that each host does on its own)."""
  return make_mesh(devices=jax.local_devices(), axes=(axis,))


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
  return run_state.LOCK if process_index == 0 else f".dfi_jax.host{process_index}.lock"


@contextlib.contextmanager
def hold_workdir(workdir, flag: str = "workdir",
                 check: Callable[[], None] | None = None) -> Iterator[Held]:
  """`run_state.locked(workdir)` for a run that every host starts with the same command, after
  `check()` (the settings and inputs, before anything is written).

  One host: exactly `run_state.locked`; `agree` does nothing. Many hosts: process 0 takes the
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
    with run_state.locked(workdir, flag) as path:
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
          path = stack.enter_context(run_state.locked(workdir, flag, lock=host_lock(me)))
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
