"""Neighbours aligned onto the test face (dfi_jax/dfi/align.py): geometry against known answers,
the aligned w against the pipeline's when there is nothing to align, and the tiny edit run."""

import dataclasses

import numpy as np
import pytest

from dfi_jax.dfi import align
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from dfi_jax.data import faces
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import neighbours as neighbours_lib
from experiments.configs import synthetic
from image_points import dots, peak
import w_reference

SIZE = 64


def test_similarity_fit_recovers_a_known_transform():
  rng = np.random.default_rng(0)
  src = rng.uniform(0, 100, (12, 2))
  angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
  rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  matrix, residual = align.similarity_fit(src, src @ rot.T + shift)
  np.testing.assert_allclose(matrix[:, :2], rot, atol=1e-9)
  np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
  assert residual < 1e-9


def test_warp_moves_a_dot_where_the_transform_says():
  image = np.zeros((40, 40, 3), np.float32)
  image[10, 12] = 1.0
  matrix = np.array([[1.0, 0.0, 7.0], [0.0, 1.0, 5.0]])  # shift by (+7, +5)
  warped = align.warp(image, matrix, 40)
  y, x = np.unravel_index(np.argmax(warped[..., 0]), (40, 40))
  assert (y, x) == (15, 19)


def test_hull_mask():
  mask = align.hull_mask(np.array([[10.0, 10], [22, 10], [16, 22]]), 32)
  assert mask[14, 16] > 0.9 and mask[0, 0] < 0.05


def test_landmarks_match_the_render_at_every_size():
  params = [faces.sample_face(s) for s in range(3)]
  for size in (32, 64, 96):
    expected = np.stack([faces.render(p, size).landmarks for p in params])
    np.testing.assert_allclose(align.landmarks(params, size), expected, atol=1e-4)


@pytest.mark.parametrize("transform", align.TRANSFORMS)
def test_warping_one_face_onto_another_puts_its_landmarks_on_the_others(transform):
  lm = align.landmarks([faces.sample_face(s) for s in (3, 11)], SIZE)
  src, dst = np.round(lm[0]), lm[1]  # dots sit on pixel centres
  matrix, residual = align.fit(src, dst, transform)
  assert residual < 1.0  # the generator's faces differ from a similarity by < 1 px at 64²
  warped = align.warp_onto(dots(src, (SIZE, SIZE)), src, dst, transform)
  moved = src @ matrix[:, :2].T + matrix[:, 2]
  for (mx, my), (dx, dy) in zip(moved, dst):
    px, py = peak(warped, mx, my)
    assert np.hypot(px - mx, py - my) < 0.3  # the image moved where the fit says
    assert np.hypot(px - dx, py - dy) < 1.5  # and so within ~a pixel of the other face's


def test_warping_onto_itself_is_the_identity():
  face = faces.render(faces.sample_face(5), SIZE)
  for transform in align.TRANSFORMS:
    same = align.warp_onto(face.image, face.landmarks, face.landmarks, transform)
    np.testing.assert_allclose(same, face.image, atol=1e-5)


def test_affine_fit_recovers_a_known_affine_map():
  rng = np.random.default_rng(0)
  src = rng.uniform(0, 60, (12, 2))
  m = np.array([[1.1, 0.2, 3.0], [-0.1, 0.9, -2.0]])
  matrix, residual = align.affine_fit(src, src @ m[:, :2].T + m[:, 2])
  np.testing.assert_allclose(matrix, m, atol=1e-9)
  assert residual < 1e-9
  with pytest.raises(ValueError, match="transform"):
    align.fit(src, src, "projective")


def test_same_geometry_copies_landmarks_not_looks_or_attributes():
  a, b = faces.sample_face(1), faces.sample_face(2)
  moved = align.same_geometry(a, b)
  np.testing.assert_allclose(align.landmarks([moved], SIZE), align.landmarks([b], SIZE))
  kept = [f.name for f in dataclasses.fields(faces.FaceParams)
          if f.name not in align.GEOMETRY_FIELDS]
  assert all(getattr(moved, k) == getattr(a, k) for k in kept)


@pytest.fixture(scope="module")
def tiny():
  config = synthetic.get_config("tiny")
  network = kit.load_network(config)
  return config, network, features_lib.make_phi(network.net)


def test_aligned_w_equals_the_pipelines_when_landmarks_coincide(tiny):
  config, network, phi = tiny
  size = config.image_size
  images, attributes = faces.generate(range(12), size)
  bank = features_lib.compute_features(phi, network.params, images, 16)
  source = ~attributes[:, 3]
  nb = neighbours_lib.nearest(bank, bank[:2], neighbours_lib.Candidates(source, ~source), 3)
  same = np.broadcast_to(align.landmarks([faces.sample_face(0)], size)[0], (12, 12, 2))
  vec = align.aligned_vectors(phi, network.params, align.Landmarked(images, same), same[:2], [nb])
  expected = w_reference.mean_difference(bank, nb)
  np.testing.assert_allclose(vec.w[0], expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(
      vec.pixels[0][1], images[np.asarray(nb.target[1])].mean(0)
      - images[np.asarray(nb.source[1])].mean(0), atol=1e-5)


def test_tiny_edit_run_with_aligned_neighbours(tiny, tmp_path):
  config = synthetic.get_config("tiny")
  with config.unlocked():
    config.align_neighbours = True
    config.deltas = (0.4,)
    config.attributes = ("smiling", "eyeglasses")
  record = edit_run.run(config, tmp_path)
  assert record["settings"]["align_neighbours"] is True
  assert len(record["per_image"]) == 4
  assert all(np.isfinite(r["r"]) and np.isfinite(r["outside"]) for r in record["per_image"])
  with config.unlocked():
    config.data = "folder"
  with pytest.raises(ValueError, match="synthetic"):
    kit.aligned_vectors(config, None, None, None, [])
