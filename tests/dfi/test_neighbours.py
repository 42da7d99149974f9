"""Neighbour selection: the reference rules (tests/neighbours_reference.py) against brute force,
and the library's host-side rankings."""

import numpy as np
import pytest

from dfi_jax.dfi import neighbours as nb_lib
import neighbours_reference


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
  got = neighbours_reference.attribute_neighbours(bank, queries, source, target, 6, exclude,
                                                  allowed)
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
  got = neighbours_reference.feature_neighbours(bank, queries, ~has, has, 7,
                                                np.array([0, 5, -1, -1]))
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


def test_nearest_on_the_mesh_equals_the_reference_rules():
  rng = np.random.default_rng(2)
  bank = rng.integers(0, 3, (70, 5)).astype(np.float32)  # ties
  queries = rng.integers(0, 3, (3, 5)).astype(np.float32)
  has = rng.random(70) < 0.5
  exclude = np.array([4, -1, 9], np.int32)
  got = nb_lib.nearest(bank, queries, nb_lib.Candidates(~has, has), 6, exclude=exclude)
  want = neighbours_reference.feature_neighbours(bank, queries, ~has, has, 6, exclude)
  np.testing.assert_array_equal(got.source, want.source)
  np.testing.assert_array_equal(got.target, want.target)
  attributes = bank > 1
  allowed = rng.random((3, 70)) < 0.7
  got = nb_lib.nearest(attributes, queries > 1, nb_lib.Candidates(~has, has), 6,
                       metric="hamming", exclude=exclude, allowed=allowed)
  want = neighbours_reference.attribute_neighbours(attributes, queries > 1, ~has, has, 6,
                                                   exclude, allowed)
  np.testing.assert_array_equal(got.source, want.source)
  np.testing.assert_array_equal(got.target, want.target)


def test_streamed_search_is_the_nearest_k_over_all_batches_ties_by_index():
  rng = np.random.default_rng(3)
  bank = rng.integers(0, 3, (53, 4)).astype(np.float32)  # many exact ties across batches
  queries = rng.integers(0, 3, (5, 4)).astype(np.float32)
  got = nb_lib.streamed(queries, (bank[s:s + 8] for s in range(0, 53, 8)), 9)
  assert got.dtype == np.int32 and got.shape == (5, 9)
  for b in range(5):
    d = np.sum((bank - queries[b]) ** 2, axis=1)
    assert list(got[b]) == sorted(range(53), key=lambda i: (d[i], i))[:9]


def test_hamming_order_and_first_k_rank_candidates_ties_by_index():
  rng = np.random.default_rng(4)
  attributes = rng.random((40, 6)) < 0.5
  query = rng.random(6) < 0.5
  candidates = attributes[:, 2]
  columns = np.arange(6) != 2
  got = nb_lib.hamming_order(attributes, query, candidates, columns)
  want = sorted(np.flatnonzero(candidates),
                key=lambda i: (int(np.sum(attributes[i, columns] != query[columns])), i))
  assert list(got) == want
  distance = np.array([3.0, 1.0, 2.0, 1.0, 0.5])
  assert list(nb_lib.first_k(distance, 3)) == [4, 1, 3]
  assert list(nb_lib.first_k(distance, 3, ties=[0, 9, 0, 2, 0])) == [4, 3, 1]
