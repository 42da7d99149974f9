"""The edit run's neighbours and w, recomputed by brute force over the whole bank.

`feature_bank.find_neighbours` and `attribute_vector.from_rows` are the run's own neighbour
and w step; here they run on a tiny generated in-memory bank and every (test image, edit) is
checked against a plain loop over all bank images: held-out test faces, self-exclusion of test
images taken from the bank, same-group restriction, and the map from bank indices to the rows
whose φ was computed.
"""

import numpy as np
import pytest

from dfi_jax.runs import kit
from dfi_jax.data import faces
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.dfi import attribute_vector
from dfi_jax.data import banks
from dfi_jax.data import sources
from experiments.configs import synthetic


def pixels_phi(images):
  """A stand-in φ (`[M, S, S, 3]` -> `[M, D]`): the selection must not depend on which φ."""
  return np.asarray(images, np.float32).reshape(len(images), -1)


class CountingPhi:
  """`pixels_phi` that records how many images each call received."""

  def __init__(self):
    self.calls = []

  def __call__(self, images):
    self.calls.append(len(images))
    return pixels_phi(images)


def in_memory(bank, phi):
  return feature_bank.in_memory(bank.images, phi, bank.images[0].size)


def brute_force(distance, has, k, exclude=-1, allowed=None):
  """(source, target) lists: the k nearest bank images lacking / having the attribute."""
  out = []
  for want in (False, True):
    cands = [i for i in range(len(has)) if has[i] == want and i != exclude
             and (allowed is None or allowed[i])]
    cands.sort(key=lambda i: (distance[i], i))
    assert len(cands) >= k  # the fixture's bank is large enough for a full set
    out.append(cands[:k])
  return out


def setup(neighbours, **overrides):
  config = synthetic.get_config("tiny")
  config.neighbours = neighbours
  for field, value in overrides.items():
    config[field] = value
  bank = banks.load_bank(config)
  edits = kit.select_edits(bank, ())
  masks = {e.name: neighbours_lib.candidate_masks(bank.attributes, e, bank.attribute_names)
           for e in edits}
  return config, bank, edits, masks


def check_vectors(found, bank, edits, want):
  """w of every edit equals the neighbour-mean difference over the whole bank's φ."""
  full = pixels_phi(bank.images).astype(np.float64)
  for e in edits:
    w = attribute_vector.from_rows(found.bank, found.used, found.sets[e.name])
    for b, (src, tgt) in enumerate(want[e.name]):
      np.testing.assert_allclose(w[b], full[tgt].mean(0) - full[src].mean(0), rtol=1e-5,
                                 atol=1e-5)


def test_held_out_faces_get_hamming_neighbours_and_w_over_the_whole_bank():
  config, bank, edits, masks = setup("attributes")
  tests = sources.load_tests(config, bank, edits)
  # Test faces: never in the bank, lacking every attribute (each edit adds one).
  seeds = [int(n.removeprefix("face")) for n in tests.names]
  assert min(seeds) >= config.test_seed > config.bank_seed + config.bank_size
  assert not set(tests.names) & set(bank.names) and tests.bank_index is None
  assert not tests.attributes.any()
  for i, seed in enumerate(seeds):
    assert not any(faces.sample_face(seed).attributes)
    assert np.abs(bank.images - tests.images[i]).reshape(len(bank.images), -1).max(1).min() > 0
  phi = CountingPhi()
  found = feature_bank.find_neighbours(bank, in_memory(bank, phi), tests,
                                       pixels_phi(tests.images), masks,
                                       feature_bank.Search(config.k, config.neighbours))
  want = {}
  for e in edits:
    a = faces.ATTRIBUTES.index(e.target_attribute)
    want[e.name] = []
    for b in range(len(tests.names)):
      hamming = [int(np.sum(bank.attributes[i] != tests.attributes[b]))
                 for i in range(len(bank.images))]
      want[e.name].append(brute_force(hamming, bank.attributes[:, a], config.k))
      got = found.sets[e.name]
      assert [list(np.asarray(got.source[b])), list(np.asarray(got.target[b]))] == \
          want[e.name][b], (e.name, b)
  # φ only for the bank images some set uses: fewer rows than the bank, so the map from bank
  # indices to rows of `found.bank` matters.
  used = sorted({i for sets in want.values() for pair in sets for s in pair for i in s})
  assert list(found.used) == used and len(used) < len(bank.images)
  assert phi.calls == [len(used)]
  check_vectors(found, bank, edits, want)


@pytest.mark.parametrize("neighbours", ["attributes", "features"])
def test_bank_test_images_are_never_their_own_neighbour_and_keep_to_their_group(neighbours):
  config, bank, edits, masks = setup(neighbours, bank_size=120, k=4)
  group = np.random.default_rng(0).integers(0, 2, len(bank.images)).astype(np.int32)
  if neighbours == "attributes":
    bank = bank._replace(group=group)
  names = [bank.names[i] for i in (0, 7, 64, 119)]
  tests = sources.bank_tests(bank, names)
  np.testing.assert_array_equal(tests.bank_index, [0, 7, 64, 119])
  phi_x = pixels_phi(tests.images)
  found = feature_bank.find_neighbours(bank, in_memory(bank, pixels_phi), tests, phi_x, masks,
                                       feature_bank.Search(config.k, config.neighbours))
  full = pixels_phi(bank.images).astype(np.float64)
  want = {}
  for e in edits:
    has = bank.attributes[:, faces.ATTRIBUTES.index(e.target_attribute)]
    want[e.name] = []
    for b, own in enumerate(tests.bank_index):
      if neighbours == "attributes":
        distance = np.sum(bank.attributes != tests.attributes[b], axis=1)
        allowed = group == tests.group[b]
      else:  # the image itself is at distance 0: it would be first were it not excluded
        distance = np.sum((full - phi_x[b]) ** 2, axis=1)
        allowed = None
      want[e.name].append(brute_force(distance, has, config.k, own, allowed))
      got = found.sets[e.name]
      assert [list(np.asarray(got.source[b])), list(np.asarray(got.target[b]))] == \
          want[e.name][b], (e.name, b)
  check_vectors(found, bank, edits, want)


def test_w_others_project_takes_every_other_attributes_w_out_of_the_edits():
  config, bank, edits, masks = setup("attributes", w_others="project")
  tests = sources.load_tests(config, bank, edits)
  chosen = [e for e in edits if e.name == "eyeglasses"]
  directions, found = kit.make_directions(config, bank, in_memory(bank, pixels_phi), tests,
                                          chosen, {"eyeglasses": masks["eyeglasses"]})
  (w,) = directions(pixels_phi(tests.images))
  nb = found["neighbourhood"]
  plain = attribute_vector.from_rows(nb.bank, nb.used, nb.sets["eyeglasses"])
  others = [attribute_vector.from_rows(nb.bank, nb.used, nb.sets[e.name]) for e in edits
            if e.name != "eyeglasses"]
  assert set(nb.sets) == {e.name for e in edits}  # the others' neighbours were found too
  for o in others:  # per face, orthogonal to every other attribute's w of the same face
    cos = np.sum(o * w, -1) / (np.linalg.norm(o, axis=-1) * np.linalg.norm(w, axis=-1))
    assert np.abs(cos).max() < 1e-4
  np.testing.assert_allclose(w, attribute_vector.project_out(plain, np.stack(others)), atol=1e-4)
  assert np.linalg.norm(w) < np.linalg.norm(plain)
  config.w_others = "keep"
  directions, _ = kit.make_directions(config, bank, in_memory(bank, pixels_phi), tests,
                                      chosen, {"eyeglasses": masks["eyeglasses"]})
  np.testing.assert_array_equal(directions(pixels_phi(tests.images))[0], plain)
