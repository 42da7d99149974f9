"""Tests for the procedural face generator (dfi_jax.data.faces)."""

import dataclasses
import itertools

import numpy as np
import pytest

from dfi_jax.data import faces

ATTRS = faces.ATTRIBUTES


def _landmark(face: faces.Face, name: str) -> np.ndarray:
  return face.landmarks[faces.LANDMARKS.index(name)]


def test_api_constants():
  assert ATTRS == ("older", "mouth_open", "eyes_open", "smiling", "moustache", "eyeglasses")
  assert set(faces.ATTRIBUTE_PROBS) == set(ATTRS)
  assert all(0 < faces.ATTRIBUTE_PROBS[a] < 1 for a in ATTRS)
  assert len(faces.LANDMARKS) >= 8 and len(set(faces.LANDMARKS)) == len(faces.LANDMARKS)
  for name in ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right",
               "mouth_centre", "chin", "left_brow", "right_brow"):
    assert name in faces.LANDMARKS


def test_determinism():
  p1, p2 = faces.sample_face(7), faces.sample_face(7)
  assert p1 == p2
  f1, f2 = faces.render(p1, 64), faces.render(p2, 64)
  np.testing.assert_array_equal(f1.image, f2.image)
  np.testing.assert_array_equal(f1.landmarks, f2.landmarks)
  assert f1.masks.keys() == f2.masks.keys() == set(ATTRS)
  for a in ATTRS:
    np.testing.assert_array_equal(f1.masks[a], f2.masks[a])
  other = faces.sample_face(8)
  assert other != p1
  assert np.abs(faces.render(other, 64).image - f1.image).mean() > 0.02


def test_params_are_frozen():
  p = faces.sample_face(0)
  with pytest.raises(dataclasses.FrozenInstanceError):
    p.seed = 1  # type: ignore[misc]
  assert len(p.attributes) == len(ATTRS) and all(isinstance(v, bool) for v in p.attributes)


@pytest.mark.parametrize("size,n_seeds", [(64, 30), (128, 20)])
def test_counterfactual_changes_only_inside_mask(size, n_seeds):
  inside_means = {a: [] for a in ATTRS}
  for seed in range(n_seeds):
    p = faces.sample_face(seed)
    face = faces.render(p, size)
    for i, a in enumerate(ATTRS):
      cf = faces.counterfactual(p, a, size)
      mask = face.masks[a]
      diff = np.abs(face.image - cf.image).max(axis=-1)
      # The masks are geometric bounds, so nothing outside may change at all.
      assert diff[~mask].max(initial=0.0) == 0.0, (size, seed, a)
      # Masks depend on the identity only, and so do landmarks.
      for b in ATTRS:
        np.testing.assert_array_equal(cf.masks[b], face.masks[b])
      np.testing.assert_array_equal(cf.landmarks, face.landmarks)
      inside = np.abs(face.image - cf.image)[mask].mean()
      assert inside > 0.01, (size, seed, a, inside)
      assert diff[mask].max() > 0.1, (size, seed, a)
      inside_means[a].append(inside)
  for a in ATTRS:
    assert np.mean(inside_means[a]) > 0.02, (a, np.mean(inside_means[a]))


def test_counterfactual_toggles_exactly_one_attribute_both_ways():
  p = faces.sample_face(3)
  for i, a in enumerate(ATTRS):
    q = faces.with_attributes(p, **{a: not p.attributes[i]})
    assert q.attributes[i] != p.attributes[i]
    assert q.attributes[:i] + q.attributes[i + 1:] == p.attributes[:i] + p.attributes[i + 1:]
    assert dataclasses.replace(q, attributes=p.attributes) == p
    # Adding and removing the attribute, at the smallest size: the counterfactual differs from
    # the face only inside that attribute's mask, and does differ there.
    for face_params in (p, q):
      face = faces.render(face_params, 32)
      diff = np.abs(faces.counterfactual(face_params, a, 32).image - face.image).max(-1)
      assert diff[~face.masks[a]].max(initial=0.0) == 0.0, (a, face_params.attributes)
      assert diff[face.masks[a]].max() > 0.1, (a, face_params.attributes)


def test_masks_ignore_every_attribute_value():
  p = faces.sample_face(11)
  ref = faces.render(p, 48)
  for values in itertools.product((False, True), repeat=len(ATTRS)):
    face = faces.render(faces.with_attributes(p, **dict(zip(ATTRS, values))), 48)
    for a in ATTRS:
      np.testing.assert_array_equal(face.masks[a], ref.masks[a])


def test_masks_cover_their_features():
  for seed in range(10):
    face = faces.render(faces.sample_face(seed), 96)
    def at(name, a):
      x, y = np.round(_landmark(face, name)).astype(int)
      return face.masks[a][y, x]
    for eye in ("left_eye", "right_eye"):
      assert at(eye, "eyes_open") and at(eye, "eyeglasses")
    for point in ("mouth_centre", "mouth_left", "mouth_right"):
      assert at(point, "mouth_open") and at(point, "smiling")
    assert at("left_brow", "older") and at("right_brow", "older")
    upper_lip = (_landmark(face, "nose_tip") + _landmark(face, "mouth_centre")) / 2
    x, y = np.round(upper_lip).astype(int)
    assert face.masks["moustache"][y, x]
    for a in ATTRS:
      assert 0 < face.masks[a].mean() < 0.6, (seed, a)
    # Smaller features, smaller masks.
    assert face.masks["eyes_open"].mean() < 0.06
    assert face.masks["moustache"].mean() < 0.1


@pytest.mark.parametrize("size", [32, 1024])
def test_extreme_sizes(size):
  face = faces.render(faces.sample_face(5), size)
  assert face.image.shape == (size, size, 3) and face.image.dtype == np.float32
  assert 0.0 <= face.image.min() and face.image.max() <= 1.0
  assert face.image.std() > 0.05
  for a in ATTRS:
    assert face.masks[a].shape == (size, size) and face.masks[a].dtype == bool
  assert face.landmarks.shape == (len(faces.LANDMARKS), 2)
  assert face.landmarks.dtype == np.float32


@pytest.mark.parametrize("size", [31, 1025, 0, -64, 64.0, True, "64"])
def test_bad_sizes_rejected(size):
  p = faces.sample_face(0)
  with pytest.raises(ValueError, match=r"\[32, 1024\]") as info:
    faces.render(p, size)
  assert repr(size) in str(info.value)
  with pytest.raises(ValueError):
    faces.counterfactual(p, "smiling", size)
  with pytest.raises(ValueError):
    faces.generate([0], size)


def test_generate_matches_probabilities_and_render():
  seeds = list(range(400))
  images, attributes = faces.generate(seeds, 32)
  assert images.shape == (400, 32, 32, 3) and images.dtype == np.float32
  assert attributes.shape == (400, len(ATTRS)) and attributes.dtype == bool
  assert 0.0 <= images.min() and images.max() <= 1.0
  freq = attributes.mean(axis=0)
  for a, f in zip(ATTRS, freq):
    assert abs(f - faces.ATTRIBUTE_PROBS[a]) < 0.08, (a, f)
  for i in (0, 123, 399):
    p = faces.sample_face(seeds[i])
    np.testing.assert_array_equal(attributes[i], p.attributes)
    np.testing.assert_array_equal(images[i], faces.render(p, 32).image)
  # Attributes are drawn independently: no strong pairwise correlation.
  corr = np.corrcoef(attributes.T.astype(float))
  assert np.abs(corr - np.eye(len(ATTRS))).max() < 0.2


def test_with_attributes():
  p = faces.sample_face(1)
  q = faces.with_attributes(p, smiling=True, eyeglasses=False)
  assert q.attributes[ATTRS.index("smiling")] is True
  assert q.attributes[ATTRS.index("eyeglasses")] is False
  assert dataclasses.replace(q, attributes=p.attributes) == p
  with pytest.raises(ValueError) as info:
    faces.with_attributes(p, bearded=True)
  message = str(info.value)
  assert "bearded" in message and all(a in message for a in ATTRS)
  with pytest.raises(ValueError, match="eyeglasses"):
    faces.counterfactual(p, "glasses", 32)


def test_landmarks_geometry():
  # (Landmarks ignoring attributes is checked with the counterfactuals above.)
  for seed in range(20):
    p = faces.sample_face(seed)
    small, big = faces.render(p, 64), faces.render(p, 128)
    pts = {n: _landmark(small, n) for n in faces.LANDMARKS}
    assert (small.landmarks >= 0).all() and (small.landmarks <= 63).all()
    # Image-side convention: "left" is nearer x = 0.
    assert pts["left_eye"][0] < pts["right_eye"][0]
    assert pts["left_brow"][0] < pts["right_brow"][0]
    assert pts["mouth_left"][0] < pts["mouth_centre"][0] < pts["mouth_right"][0]
    assert pts["left_ear"][0] < pts["left_eye"][0] and pts["right_eye"][0] < pts["right_ear"][0]
    # Top to bottom: forehead, brows, eyes, nose, mouth, chin.
    ys = [pts[n][1] for n in ("forehead", "left_brow", "left_eye", "nose_tip",
                              "mouth_centre", "chin")]
    assert ys == sorted(ys)
    # Roughly aligned: eyes near 40% height, face centred.
    assert 0.33 < pts["left_eye"][1] / 64 < 0.47
    assert abs((pts["left_eye"][0] + pts["right_eye"][0]) / 2 / 64 - 0.5) < 0.05
    # Pixel-centre convention: x_128 + 0.5 == 2 (x_64 + 0.5).
    np.testing.assert_allclose(big.landmarks + 0.5, 2 * (small.landmarks + 0.5), atol=1e-4)


def test_identities_vary():
  params = [faces.sample_face(s) for s in range(60)]
  assert len({p.hair_style for p in params}) == len(faces.HAIR_STYLES)
  assert len({p.neckline for p in params}) == len(faces.NECKLINES)
  assert len({p.glasses_style for p in params}) == len(faces.GLASSES_STYLES)
  skins = np.array([p.skin for p in params])
  assert skins.mean(axis=1).std() > 0.08
  eyes = np.array([faces.render(p, 64).landmarks[faces.LANDMARKS.index("left_eye")]
                   for p in params[:10]])
  assert eyes.std(axis=0).min() > 0.2      # placement jitter: a pixel mean is not perfect
