"""Neighbour selection against brute-force references."""

import numpy as np
import pytest

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
