"""High-resolution editing: the geometry helpers against known answers, and the tiny run."""

import json

import numpy as np
import pytest

from dfi_jax import highres
from dfi_jax import reconstruct
from experiments.configs import highres as highres_config


def test_similarity_fit_recovers_a_known_transform():
  rng = np.random.default_rng(0)
  src = rng.uniform(0, 100, (12, 2))
  angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
  rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  matrix, residual = highres.similarity_fit(src, src @ rot.T + shift)
  np.testing.assert_allclose(matrix[:, :2], rot, atol=1e-9)
  np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
  assert residual < 1e-9


def test_warp_moves_a_dot_where_the_transform_says():
  image = np.zeros((40, 40, 3), np.float32)
  image[10, 12] = 1.0
  matrix = np.array([[1.0, 0.0, 7.0], [0.0, 1.0, 5.0]])  # shift by (+7, +5)
  warped = highres.warp(image, matrix, 40)
  y, x = np.unravel_index(np.argmax(warped[..., 0]), (40, 40))
  assert (y, x) == (15, 19)


def test_colour_match_and_mask():
  rng = np.random.default_rng(1)
  ref = rng.uniform(0.3, 0.7, (32, 32, 3)).astype(np.float32)
  out = highres.colour_match(np.clip(ref * 0.5 + 0.4, 0, 1), ref, np.ones((32, 32), np.float32))
  np.testing.assert_allclose(out.mean((0, 1)), ref.mean((0, 1)), atol=1e-3)
  mask = highres.hull_mask(np.array([[10.0, 10], [22, 10], [16, 22]]), 32)
  assert mask[14, 16] > 0.9 and mask[0, 0] < 0.05


def test_tiny_highres_run(tmp_path, monkeypatch):
  record = highres.run(highres_config.get_config("tiny"), tmp_path)
  assert len(record["per_image"]) == 2 and record["peak_rss_mb"] > 0
  assert all(np.isfinite(r["r"]) for r in record["per_image"])
  assert (tmp_path / "grid.png").exists()
  assert json.loads((tmp_path / "metrics.json").read_text())["settings"]["k"] == 2
  # The same command again resumes: every edit comes from state/, none is recomputed.
  monkeypatch.setattr(reconstruct.ReverseMap, "__call__", lambda *a, **k: pytest.fail("rerun"))
  again = highres.run(highres_config.get_config("tiny"), tmp_path)
  assert [r["r"] for r in again["per_image"]] == [r["r"] for r in record["per_image"]]
