"""The reference w for tests: plain NumPy means of the neighbours' rows.

Written independently of `dfi_jax.dfi.attribute_vector`, whose `difference` every implementation
of w calls, so that a mistake there (a swapped sign, a wrong K) shows against this.
"""

import numpy as np


def mean_difference(bank, neighbours) -> np.ndarray:
  """`[N, D]` bank and `Neighbours` of `[B, K]` indices -> `[B, D]` float64
  mean bank[target] − mean bank[source]."""
  bank = np.asarray(bank, np.float64)
  return (bank[np.asarray(neighbours.target)].mean(1)
          - bank[np.asarray(neighbours.source)].mean(1))
