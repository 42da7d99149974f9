"""High-resolution editing: the tiny run (its geometry helpers are tested in test_align.py)."""

import json

import numpy as np
import pytest

from dfi_jax.data import faces
from dfi_jax.data import sources
from dfi_jax.dfi import align
from dfi_jax.dfi import pipeline
from dfi_jax.dfi import reconstruct
from dfi_jax.runs import highres
from dfi_jax.runs import kit
from experiments.configs import highres as highres_config


def test_colour_match():
  rng = np.random.default_rng(1)
  ref = rng.uniform(0.3, 0.7, (32, 32, 3)).astype(np.float32)
  out = highres.colour_match(np.clip(ref * 0.5 + 0.4, 0, 1), ref, np.ones((32, 32), np.float32))
  np.testing.assert_allclose(out.mean((0, 1)), ref.mean((0, 1)), atol=1e-3)


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


def test_highres_w_points_from_the_warped_sources_to_the_warped_targets():
  """The run's w = mean φ(warped targets) − mean φ(warped sources), checked against plain means
  of φ of the chosen candidates: a flipped sign (or swapped sets) fails here."""
  config = highres_config.get_config("tiny")
  size = config.image_size
  network = kit.load_network(config)
  pipe = pipeline.make(network.net, network.params, size, kit.reverse_map_config(config))
  candidates = [faces.sample_face(s) for s in range(config.bank_seed,
                                                    config.bank_seed + config.bank_size)]
  params = sources.test_face_params(config)[0]
  test = highres.TestFace(params, faces.render(params, size), None, None)
  for attribute in config.attributes:
    source, target = highres.chosen(config, candidates, test, attribute)
    col = faces.ATTRIBUTES.index(attribute)
    assert len(source) == len(target) == config.k
    assert not any(c.attributes[col] for c, _ in source)
    assert all(c.attributes[col] for c, _ in target)

    def phi(pairs):
      return np.stack([np.asarray(pipe.phi(pipe.params, align.warp(
          faces.render(c, size).image, matrix, size)[None]))[0] for c, matrix in pairs])

    want = phi(target).astype(np.float64).mean(0) - phi(source).astype(np.float64).mean(0)
    w = highres.direction(config, pipe, candidates, test, attribute)
    assert w.shape == (1, want.size) and w.dtype == np.float32
    np.testing.assert_allclose(w[0], want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
