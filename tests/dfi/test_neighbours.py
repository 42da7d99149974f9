"""Neighbour selection against brute-force references; attribute vectors and scaling."""

import numpy as np
import pytest

import jax.numpy as jnp

from dfi_jax.dfi import interpolate
from dfi_jax.dfi import neighbours as nb_lib


def brute_force_hamming(bank, query, source, target, k, exclude=-1, allowed=None):
  out = []
  for mask in (source, target):
    cands = [i for i in range(len(bank)) if mask[i] and i != exclude
             and (allowed is None or allowed[i])]
    cands.sort(key=lambda i: (int(np.sum(bank[i] != query)), i))
    out.append(cands[:k])
  return out


def test_attribute_neighbours_match_brute_force():
  rng = np.random.default_rng(0)
  bank = rng.random((120, 8)) < 0.4
  queries = rng.random((5, 8)) < 0.4
  edit = nb_lib.Edit("b", "b", "a")
  names = tuple("abcdefgh")
  source, target = nb_lib.candidate_masks(bank, edit, names)
  np.testing.assert_array_equal(source, bank[:, 0] & ~bank[:, 1])
  np.testing.assert_array_equal(target, bank[:, 1] & ~bank[:, 0])
  exclude = np.array([3, -1, 7, -1, 50], np.int32)
  allowed = rng.random((5, 120)) < 0.8
  got = nb_lib.attribute_neighbours(bank, queries, source, target, 6, exclude, allowed)
  for b in range(5):
    want_s, want_t = brute_force_hamming(bank, queries[b], source, target, 6, exclude[b],
                                         allowed[b])
    assert list(np.asarray(got.source[b])) == want_s
    assert list(np.asarray(got.target[b])) == want_t


def test_feature_neighbours_match_brute_force_and_break_ties_by_index():
  rng = np.random.default_rng(1)
  bank = rng.integers(0, 3, (90, 4)).astype(np.float32)  # many exact ties
  queries = rng.integers(0, 3, (4, 4)).astype(np.float32)
  has = rng.random(90) < 0.5
  got = nb_lib.feature_neighbours(bank, queries, ~has, has, 7, np.array([0, 5, -1, -1]))
  for b in range(4):
    d = np.sum((bank - queries[b]) ** 2, axis=1)
    for mask, result in ((~has, got.source[b]), (has, got.target[b])):
      cands = [i for i in range(90) if mask[i] and i != [0, 5, -1, -1][b]]
      cands.sort(key=lambda i: (d[i], i))
      assert list(np.asarray(result)) == cands[:7]


def test_unknown_attribute_lists_valid_names():
  with pytest.raises(ValueError, match=r"valid attributes are \['older', 'smiling'\]"):
    nb_lib.attribute_index(["glasses"], ["older", "smiling"])


def test_too_few_candidates_is_a_clear_error():
  source = np.array([True, True, False, False, False])
  with pytest.raises(ValueError, match="K=3 but edit 'x' has only 2 source and 3 target"):
    nb_lib.check_candidates(source, ~source, 3, "x")
  with pytest.raises(ValueError, match="K must be positive"):
    nb_lib.check_candidates(source, ~source, 0, "x")


def test_attribute_vector_is_difference_of_neighbour_means():
  rng = np.random.default_rng(2)
  bank = rng.standard_normal((30, 11)).astype(np.float32)
  n = nb_lib.Neighbours(jnp.array([[0, 1, 2], [4, 5, 6]]), jnp.array([[7, 8, 9], [3, 2, 1]]))
  w = np.asarray(interpolate.attribute_vector(bank, n))
  np.testing.assert_allclose(w[0], bank[[7, 8, 9]].mean(0) - bank[[0, 1, 2]].mean(0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(w[1], bank[[3, 2, 1]].mean(0) - bank[[4, 5, 6]].mean(0), rtol=1e-5,
                             atol=1e-6)


def test_scalings_with_a_batch_where_norm_and_mean_square_differ():
  # Row 0: ‖w‖ = 5, mean(w²) = 12.5; row 1: ‖w‖ = √20, mean(w²) = 10 — each row its own scale.
  w = jnp.array([[3.0, 4.0], [-2.0, 4.0]])
  np.testing.assert_allclose(interpolate.scale_vector(w, "mean_square"),
                             [[3 / 12.5, 4 / 12.5], [-0.2, 0.4]], rtol=1e-6)
  np.testing.assert_allclose(interpolate.scale_vector(w, "unit"),
                             [[0.6, 0.8], [-2 / np.sqrt(20), 4 / np.sqrt(20)]], rtol=1e-6)
  np.testing.assert_array_equal(interpolate.scale_vector(w, "none"), w)
  with pytest.raises(ValueError, match="scaling"):
    interpolate.scale_vector(w, "l2")


def test_edit_targets_are_phi_plus_delta_w_for_every_delta_and_row():
  rng = np.random.default_rng(3)
  phi_x = rng.standard_normal((3, 4)).astype(np.float32)
  w = rng.standard_normal((3, 4)).astype(np.float32)
  deltas = [0.4, -1.5, 2.0]
  t = np.asarray(interpolate.edit_targets(jnp.asarray(phi_x), jnp.asarray(w), deltas))
  assert t.shape == (3, 3, 4) and t.dtype == np.float32
  for s, delta in enumerate(deltas):
    for b in range(3):
      np.testing.assert_allclose(t[s, b], phi_x[b] + delta * w[b], rtol=1e-6, atol=1e-6)
