"""The one DFI sequence (dfi/pipeline.py): targets' layout, the δ chain, resuming, failures."""

import numpy as np
import pytest

from dfi_jax.dfi import pipeline
from dfi_jax.dfi import reconstruct


class FakeSolve:
  """A reverse map that adds the target's first number to z0 and records every call."""

  def __init__(self, fail=()):
    self.calls, self.fail = [], set(fail)  # fail: target first numbers whose loss is NaN

  def __call__(self, targets, z0, iterations, progress=None):
    targets, z0 = np.asarray(targets), np.asarray(z0)
    self.calls.append((targets[:, 0].tolist(), z0[:, 0, 0, 0].tolist(), iterations))
    if progress is not None:
      progress(iterations)
    loss = np.array([np.nan if t in self.fail else 1.0 for t in targets[:, 0]], np.float32)
    return reconstruct.ReverseMapResult(
        z0 + targets[:, :1, None, None], loss, np.isfinite(loss),
        np.full(len(z0), iterations, np.int64), iterations)


def _images(values):
  return np.stack([np.full((2, 2, 3), v, np.float32) for v in values])


def test_targets_are_edit_major_and_each_w_scaled_on_its_own():
  phi_x = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)  # B = 2, D = 2
  w1 = np.array([[2.0, 0.0], [0.0, 4.0]], np.float32)
  w2 = np.array([[1.0, 1.0], [3.0, 4.0]], np.float32)
  got = np.asarray(pipeline.targets(phi_x, [w1, w2], "unit", [0.5, 2.0]))
  assert got.shape == (2, 4, 2)
  for s, d in enumerate([0.5, 2.0]):
    for e, w in enumerate([w1, w2]):
      for b in range(2):
        unit = w[b] / np.linalg.norm(w[b])
        np.testing.assert_allclose(got[s, e * 2 + b], phi_x[b] + d * unit, rtol=1e-6)


def test_each_delta_starts_from_the_previous_result():
  solve = FakeSolve()
  targets = np.array([[[1.0]] * 3, [[10.0]] * 3], np.float32)  # [S=2, n=3, D=1]
  ticks = []
  out = pipeline.reverse_maps(solve, targets, _images([0, 100, 200]), [4, 2], batch_size=2,
                              progress=ticks.append)
  # δ0 from x in batches of 2, then δ1 from δ0's results.
  assert solve.calls == [([1, 1], [0, 100], 4), ([1], [200], 4),
                         ([10, 10], [1, 101], 2), ([10], [201], 2)]
  np.testing.assert_array_equal(out.images[1, :, 0, 0, 0], [11, 111, 211])
  assert out.finite.all() and sum(ticks) == 4 * 3 + 2 * 3


def test_kept_items_are_not_recomputed_and_a_failed_delta_stops_its_item():
  solve = FakeSolve(fail={5.0})
  targets = np.array([[[1.0], [5.0]], [[2.0], [2.0]]], np.float32)  # item 1 fails at δ0
  kept = pipeline.empty(2, 2, (2, 2, 3))
  kept.images[0, 0], kept.finite[0, 0] = 7.0, True  # item 0's δ0 done by an earlier run
  finished = []
  out = pipeline.reverse_maps(solve, targets, _images([0, 50]), [3, 3], batch_size=1,
                              kept=kept, on_finished=lambda s, j, e: finished.append((s, j)))
  assert solve.calls == [([5], [50], 3), ([2], [7], 3)]  # item 1's δ1 never runs
  assert finished == [(1, 0)]
  assert out.finite.tolist() == [[True, False], [True, False]]
  np.testing.assert_array_equal(out.images[1, 0], 9.0)


def test_only_the_given_rows_are_mapped():
  solve = FakeSolve()
  targets = np.ones((1, 4, 1), np.float32)
  out = pipeline.reverse_maps(solve, targets, _images([0, 1, 2, 3]), [1], batch_size=8,
                              rows=[1, 3])
  assert solve.calls == [([1, 1], [1, 3], 1)]
  assert out.finite.tolist() == [[False, True, False, True]]


def test_edit_runs_the_sequence_with_each_items_own_phi():
  x = _images([0, 10])  # B = 2
  phi_x = np.array([[1.0], [2.0]], np.float32)
  seen = {}

  def directions(phi):
    seen["phi"] = np.asarray(phi)
    return [np.array([[1.0], [1.0]], np.float32), np.array([[3.0], [3.0]], np.float32)]

  starts = []

  def first_start(t, z0, phi):
    starts.append(np.asarray(phi)[:, 0].tolist())
    return z0

  pipe = pipeline.Pipeline(None, None, None, None)
  solve = FakeSolve()
  edited = pipeline.edit(pipe, x, directions, [1.0], [2], scaling="none", batch_size=3,
                         phi_x=phi_x, solve=solve, first_start=first_start)
  np.testing.assert_array_equal(seen["phi"], phi_x)
  # items: edit 0 on images 0, 1, then edit 1 on images 0, 1; target = φ(x) + 1·w.
  assert solve.calls == [([2, 3, 4], [0, 10, 0], 2), ([5], [10], 2)]
  assert starts == [[1, 2, 1], [2]]
  assert edited.edits.images.shape == (1, 4, 2, 2, 3)
  with pytest.raises(ValueError, match="2 deltas but 1 iteration"):
    pipeline.edit(pipe, x, directions, [1.0, 2.0], [2], scaling="none", batch_size=1,
                  phi_x=phi_x, solve=solve)
