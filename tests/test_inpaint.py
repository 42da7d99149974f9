"""Inpainting: holes, and the tiny run end to end."""

import json

import numpy as np
import pytest
from PIL import Image

from dfi_jax import inpaint
from experiments.configs import inpaint as inpaint_config


def test_centre_square_and_user_masks(tmp_path):
  hole = inpaint.centre_square(200, 0.5)
  assert hole.sum() == 100 * 100 and hole[50:150, 50:150].all()
  with pytest.raises(ValueError, match="hole fraction"):
    inpaint.centre_square(64, 1.0)
  mask = np.zeros((20, 30), np.uint8)
  mask[5:10, 5:20] = 255
  Image.fromarray(mask).save(tmp_path / "m.png")
  loaded = inpaint.load_hole(str(tmp_path / "m.png"), 32)
  assert loaded.shape == (32, 32) and 0 < loaded.sum() < 32 * 32
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
  with pytest.raises(ValueError, match="no white"):
    inpaint.load_hole(str(tmp_path / "empty.png"), 32)


def test_tiny_inpainting_run(tmp_path):
  config = inpaint_config.get_config("tiny")
  record = inpaint.run(config, tmp_path)
  assert set(record["summary"]) == {"rmse_dfi", "rmse_grey", "rmse_neighbour_mean"}
  assert all(np.isfinite(v) for v in record["summary"].values())
  files = sorted((tmp_path / "inpainted").glob("*.png"))
  assert len(files) == config.num_test
  truth_outside = np.asarray(Image.open(files[0]), np.float32)
  assert truth_outside.shape == (32, 32, 3)
  assert json.loads((tmp_path / "metrics.json").read_text())["hole_pixels"] == 16 * 16
  assert (tmp_path / "grid.png").exists()
