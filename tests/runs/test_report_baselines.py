"""runs.report.save_baselines: the pixel baseline of every item, each bank face read once."""

import ml_collections
import numpy as np

from dfi_jax.data import sources
from dfi_jax.data.datasets import common
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.eval import metrics
from dfi_jax.runs import report


def _run(reads: list) -> tuple[report.Results, np.ndarray]:
  rng = np.random.default_rng(0)
  stored = rng.random((8, 6, 6, 3), dtype=np.float32)
  lazy = common.LazyImages(8, 6, lambda i: reads.append(i) or stored[i])
  bank = sources.Bank(images=lazy, attributes=np.zeros((8, 1), bool), attribute_names=("a",),
                      names=[f"b{i}" for i in range(8)], edits=())
  tests = sources.TestImages(
      names=["t0", "t1"], images=rng.random((2, 6, 6, 3), dtype=np.float32),
      counterfactuals={"a": rng.random((2, 6, 6, 3), dtype=np.float32)},
      masks={"a": np.ones((2, 6, 6), bool)})
  neighbours = neighbours_lib.Neighbours(source=np.array([[0, 1, 2], [1, 2, 3]]),
                                         target=np.array([[4, 5, 6], [5, 6, 7]]))
  run = report.Results(tests=tests, items=[(0, "a"), (1, "a")], edits=None,
                       neighbour_sets={"a": neighbours}, bank_data=bank, network=None)
  return run, stored


def test_save_baselines_reads_each_bank_face_once_and_keeps_the_best_delta(tmp_path):
  reads = []
  run, stored = _run(reads)
  config = ml_collections.ConfigDict(dict(pixel_deltas=(0.25, 0.5, 1.0), pixel_delta_photos=1.0))
  baselines = report.save_baselines(config, tmp_path, run)
  assert sorted(reads) == list(range(8))  # 2 items × 3 δ would read 36 faces without ReadOnce
  for i in range(2):
    image, r, delta = baselines[(i, "a")]
    x, cf = run.tests.images[i], run.tests.counterfactuals["a"][i]
    nb = run.neighbour_sets["a"]
    expected = min((metrics.counterfactual_ratio(metrics.pixel_baseline(
        x, stored, nb.source[i], nb.target[i], d), x, cf, run.tests.masks["a"][i]), d)
        for d in config.pixel_deltas)
    assert (r, delta) == expected
    np.testing.assert_allclose(image, metrics.pixel_baseline(x, stored, nb.source[i],
                                                             nb.target[i], delta))
    assert (tmp_path / "baselines" / f"t{i}__a__pixel.png").exists()
