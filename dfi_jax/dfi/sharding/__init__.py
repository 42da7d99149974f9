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

The package: `mesh` (the mesh, rows on it), `compute` (KNN, means, reverse maps on it),
`hosts` (many hosts).
"""

from dfi_jax.dfi.sharding.mesh import (
    DATA, bank_to_mesh, local_mesh, make_mesh, mesh_from_config, padded_size, replicated,
    rows_to_mesh, shard_rows)
from dfi_jax.dfi.sharding.compute import (
    METRICS, make_attribute_vector, make_knn, neighbours, reverse_maps)
from dfi_jax.dfi.sharding.hosts import (
    MESSAGE_BYTES, DistributedSettings, Held, all_succeeded, barrier, gather_items,
    gather_values, hold_workdir, host_lock, initialize, is_writer, share)

__all__ = ["DATA", "DistributedSettings", "Held", "MESSAGE_BYTES", "METRICS", "all_succeeded",
           "bank_to_mesh", "barrier", "gather_items", "gather_values", "hold_workdir", "host_lock",
           "initialize", "is_writer", "local_mesh", "make_attribute_vector", "make_knn",
           "make_mesh", "mesh_from_config", "neighbours", "padded_size", "replicated",
           "reverse_maps", "rows_to_mesh", "shard_rows", "share"]
