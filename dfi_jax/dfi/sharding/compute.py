"""On the mesh: data-parallel reverse maps (the KNN is `neighbours.make_knn`, the neighbour
means `attribute_vector.on_mesh`)."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dfi_jax.dfi import reconstruct
from dfi_jax.dfi.sharding.mesh import DATA, padded_size


# ---------------------------------------------------------------------------------------
# Reverse maps, data-parallel.


def reverse_maps(reverse_map: reconstruct.ReverseMap, mesh: Mesh, params, targets, z0,
                 iterations: int, progress: Callable[[int], None] | None = None
                 ) -> reconstruct.ReverseMapResult:
  """`reverse_map` on a batch split over the mesh's `data` axis: `targets` `[B, D]`, `z0`
  `[B, H, W, 3]`.

  B is padded (repeating the last image) to a multiple of the axis size; params are
  replicated. Same shapes, same compiled code: keep `reverse_map` and the batch size fixed.
  `mesh` holds this host's devices only (`local_mesh`): `ReverseMap.__call__` reads its results
  back with `np.asarray`, so on many hosts each maps its own items (`share`, `gather_items`).
  """
  axis = DATA
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
