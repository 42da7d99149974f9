"""High-resolution editing: the tiny run (its geometry helpers are tested in test_align.py)."""

import json

import numpy as np
import pytest

from dfi_jax.runs import highres
from dfi_jax.dfi import reconstruct
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
