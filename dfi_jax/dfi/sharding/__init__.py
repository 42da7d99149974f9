"""Many devices and many hosts: the mesh, a bank's rows along it, reverse maps on it.

The bank's leading axis `N` is split over the mesh axis `data` (`NamedSharding(mesh,
P("data", None))`); queries and their results are replicated. The KNN on the mesh is
`neighbours.make_knn` (the one home of neighbour search); w, summed on the device that holds
each row and reduced with one `psum`, is `attribute_vector.on_mesh` (the one home of w).
Reverse maps are data-parallel: the batch axis of `z` and the targets is split over `data`, the
weights replicated, and `reconstruct.ReverseMap`'s compiled code partitioned by XLA.

Multi-host: `runs.hosts.initialize` is the one place that calls `jax.distributed.initialize`;
after it, `jax.devices()` spans every host, each host feeds only the rows its own devices hold
(`rows_to_mesh` reads just those rows), and only `is_writer()` (process 0) writes outputs. An
edit run searches the bank on the mesh of every host's devices, then each host reverse-maps its
`share` of the items on its own devices (`local_mesh`), `gather_items` collects them on every
host, and process 0 writes. `runs.hosts.hold_workdir` holds a run's
folder on every host and makes a failure during set-up on one host stop them all with its line.

The package: `mesh` (the mesh, rows on it), `compute` (reverse maps on it), `hosts` (many
hosts).
"""

from dfi_jax.dfi.sharding.mesh import (
    DATA, local_mesh, make_mesh, padded_size, replicated, rows_to_mesh,
    shard_rows)
from dfi_jax.dfi.sharding.compute import reverse_maps
from dfi_jax.dfi.sharding.hosts import barrier, gather_items, gather_values, is_writer, share

__all__ = ["DATA", "barrier", "gather_items", "gather_values", "is_writer", "local_mesh",
           "make_mesh", "padded_size", "replicated", "reverse_maps",
           "rows_to_mesh", "shard_rows", "share"]
