"""The where mask and coarse chroma in a whole (tiny) edit run: the settings reach the reverse map,
the mask keeps the rest of the face, and bad values are one clear line."""

import numpy as np
import pytest

from dfi_jax.base import run_state
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from experiments.configs import synthetic


def tiny(**overrides):
  config = synthetic.get_config("tiny")
  config.update(dict(deltas=(0.8,), attributes=("moustache", "eyeglasses"), num_test=2,
                     iterations=6, probe=""), **overrides)
  return config


def _outside(record):
  return np.mean([row["outside"] for row in record["per_image"]])


def test_the_where_mask_lowers_the_change_outside_the_attributes_region(tmp_path):
  on = edit_run.run(tiny(where="features", chroma_scale=2), tmp_path / "on")
  off = edit_run.run(tiny(), tmp_path / "off")
  assert on["settings"]["where"] == "features" and on["settings"]["chroma_scale"] == 2
  assert _outside(on) < 0.85 * _outside(off)  # random weights: a diffuse mask (0.79 measured)
  assert all(np.isfinite(row["r"]) for row in on["per_image"])  # r stays a column


@pytest.mark.parametrize("overrides, field", [
    (dict(where="hands"), "where"), (dict(chroma_scale=0), "chroma_scale"),
    (dict(luma_scale=0), "luma_scale"),
    (dict(where_low=0.8, where_high=0.4), "where_low"),
    (dict(where_sigma=-1.0), "where_sigma"), (dict(where_high=2.0), "where_high"),
    (dict(w_others="drop"), "w_others")])
def test_bad_where_settings_are_one_line_naming_the_field(overrides, field):
  with pytest.raises(run_state.RunError, match=f"--config.{field}"):
    kit.validate(tiny(**overrides))


def test_the_official_variant_keeps_the_papers_global_edit():
  config = synthetic.get_config("official")
  assert config.where == "off" and config.chroma_scale == 1 and config.w_others == "keep"
  default = synthetic.get_config()
  assert default.where == "features" and default.chroma_scale > 1
  assert default.w_others == "project"
