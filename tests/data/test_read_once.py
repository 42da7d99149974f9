"""datasets.common.ReadOnce: the pixel baseline's bank reads, each face rendered at most once."""

import numpy as np

from dfi_jax.data.datasets import common


def test_read_once_reads_each_row_once_and_returns_the_banks_rows():
  reads = []
  rng = np.random.default_rng(0)
  stored = rng.random((6, 4, 4, 3), dtype=np.float32)
  lazy = common.LazyImages(6, 4, lambda i: reads.append(i) or stored[i])
  bank = common.ReadOnce(lazy)
  np.testing.assert_array_equal(bank[np.array([3, 1, 3])], stored[[3, 1, 3]])
  np.testing.assert_array_equal(bank[[1, 5]], stored[[1, 5]])
  assert sorted(reads) == [1, 3, 5]
  source, target = np.array([0, 2]), np.array([4, 5])
  x = np.full((4, 4, 3), 0.5, np.float32)
  from dfi_jax.eval import metrics
  np.testing.assert_allclose(metrics.pixel_baseline(x, bank, source, target, 0.5),
                             metrics.pixel_baseline(x, stored, source, target, 0.5))
