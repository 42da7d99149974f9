"""w, the attribute vector: the one formula, the in-memory mean, the scalings, the edit targets.

The other implementations of w (bank streamed from disk, sharded, aligned, inpainting,
high resolution) are pinned in their own modules' tests against `w_reference`.
"""

import numpy as np
import pytest

import jax.numpy as jnp

from dfi_jax.dfi import attribute_vector
from dfi_jax.dfi import neighbours as nb_lib
import w_reference


def test_difference_is_target_minus_source_over_k_in_the_inputs_dtype():
  source = np.array([[1.0, 2.0, 4.0]], np.float32)
  target = np.array([[4.0, 2.0, 1.0]], np.float32)
  w = attribute_vector.difference(source, target)  # means: k = 1
  np.testing.assert_array_equal(w, [[3.0, 0.0, -3.0]])
  assert w.dtype == np.float32
  sums = attribute_vector.difference(3 * source, 3 * target, 3)  # sums over K = 3 rows
  np.testing.assert_array_equal(sums, w)
  j = attribute_vector.difference(jnp.asarray(source), jnp.asarray(target, jnp.float32), 3)
  assert j.dtype == jnp.float32
  np.testing.assert_allclose(j, w / 3, rtol=1e-6)
  # Means in float64 stay float64, and k = 1 is exactly their difference (no rounding added).
  a, b = np.random.default_rng(0).standard_normal((2, 5))
  assert attribute_vector.difference(a, b).dtype == np.float64
  np.testing.assert_array_equal(attribute_vector.difference(a, b), b - a)


def test_selection_weights_count_repeated_rows_and_cancel_shared_ones():
  n = nb_lib.Neighbours(jnp.array([[0, 1, 1], [2, 3, 4]]), jnp.array([[5, 5, 5], [4, 6, 7]]))
  weights = np.asarray(attribute_vector.selection_weights(n, 9))
  want = np.zeros((2, 9))
  want[0, [0, 1, 5]] = [-1 / 3, -2 / 3, 1.0]
  want[1, [2, 3, 6, 7]] = [-1 / 3, -1 / 3, 1 / 3, 1 / 3]  # row 4 is both: 0
  np.testing.assert_allclose(weights, want, rtol=1e-6, atol=1e-7)
  bank = np.random.default_rng(1).standard_normal((9, 4)).astype(np.float32)
  np.testing.assert_allclose(attribute_vector.from_bank(bank, n),
                             w_reference.mean_difference(bank, n), rtol=1e-5, atol=1e-6)


def test_row_weights_are_the_selection_weights_of_the_rows_used():
  n = nb_lib.Neighbours(np.array([[0, 1, 1], [2, 3, 4]]), np.array([[5, 5, 5], [4, 6, 7]]))
  used = np.unique(np.concatenate([np.ravel(n.source), np.ravel(n.target)]))
  mean = attribute_vector.mean_weights(n.target, used)
  assert mean.dtype == np.float64 and mean.shape == (2, len(used))
  np.testing.assert_allclose(mean.sum(1), 1.0)
  np.testing.assert_allclose(mean[0, list(used).index(5)], 1.0)  # row 5 three times of K = 3
  weights = attribute_vector.row_weights(n, used)
  full = np.asarray(attribute_vector.selection_weights(n, 9))
  np.testing.assert_allclose(weights, full[:, used], rtol=1e-6, atol=1e-7)
  bank = np.random.default_rng(2).standard_normal((9, 4))
  np.testing.assert_allclose(weights @ bank[used], w_reference.mean_difference(bank, n),
                             rtol=1e-12, atol=1e-12)


def test_attribute_vector_is_difference_of_neighbour_means():
  rng = np.random.default_rng(2)
  bank = rng.standard_normal((30, 11)).astype(np.float32)
  n = nb_lib.Neighbours(jnp.array([[0, 1, 2], [4, 5, 6]]), jnp.array([[7, 8, 9], [3, 2, 1]]))
  w = np.asarray(attribute_vector.from_bank(bank, n))
  np.testing.assert_allclose(w[0], bank[[7, 8, 9]].mean(0) - bank[[0, 1, 2]].mean(0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(w[1], bank[[3, 2, 1]].mean(0) - bank[[4, 5, 6]].mean(0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(w, w_reference.mean_difference(bank, n), rtol=1e-5, atol=1e-6)


def test_scalings_with_a_batch_where_norm_and_mean_square_differ():
  # Row 0: ‖w‖ = 5, mean(w²) = 12.5; row 1: ‖w‖ = √20, mean(w²) = 10 — each row its own scale.
  w = jnp.array([[3.0, 4.0], [-2.0, 4.0]])
  np.testing.assert_allclose(attribute_vector.scale_vector(w, "mean_square"),
                             [[3 / 12.5, 4 / 12.5], [-0.2, 0.4]], rtol=1e-6)
  np.testing.assert_allclose(attribute_vector.scale_vector(w, "unit"),
                             [[0.6, 0.8], [-2 / np.sqrt(20), 4 / np.sqrt(20)]], rtol=1e-6)
  np.testing.assert_array_equal(attribute_vector.scale_vector(w, "none"), w)
  with pytest.raises(ValueError, match="scaling"):
    attribute_vector.scale_vector(w, "l2")


def test_edit_targets_are_phi_plus_delta_w_for_every_delta_and_row():
  rng = np.random.default_rng(3)
  phi_x = rng.standard_normal((3, 4)).astype(np.float32)
  w = rng.standard_normal((3, 4)).astype(np.float32)
  deltas = [0.4, -1.5, 2.0]
  t = np.asarray(attribute_vector.edit_targets(jnp.asarray(phi_x), jnp.asarray(w), deltas))
  assert t.shape == (3, 3, 4) and t.dtype == np.float32
  for s, delta in enumerate(deltas):
    for b in range(3):
      np.testing.assert_allclose(t[s, b], phi_x[b] + delta * w[b], rtol=1e-6, atol=1e-6)


def test_project_out_removes_the_other_attributes_axes_and_keeps_the_rest():
  rng = np.random.default_rng(3)
  others = rng.standard_normal((2, 3, 50))  # [O, B, D]
  own = rng.standard_normal((3, 50))
  own -= np.einsum("bd,bd->b", own, others[0])[:, None] * others[0] / np.sum(
      others[0] ** 2, -1, keepdims=True)  # a part orthogonal to others[0] only
  w = own + 0.7 * others[0] - 1.3 * others[1]
  out = attribute_vector.project_out(w, others)
  assert out.shape == w.shape and out.dtype == np.float32
  np.testing.assert_allclose(np.einsum("obd,bd->ob", others, out), 0.0, atol=1e-4)
  # The part of w outside the others' span is kept: out is w's residual, not a shrunk w.
  span = np.linalg.lstsq(others[:, 0].T, own[0], rcond=None)[0]
  np.testing.assert_allclose(out[0], own[0] - others[:, 0].T @ span, atol=1e-4)
  np.testing.assert_array_equal(attribute_vector.project_out(w, np.zeros((0, 3, 50))),
                                w.astype(np.float32))
