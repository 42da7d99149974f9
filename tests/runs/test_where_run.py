"""The where mask and coarse chroma in a whole (tiny) edit run: the settings reach the reverse map,
the mask keeps the rest of the face, and bad values are one clear line."""

import numpy as np
import pytest

from dfi_jax.base import run_state
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import differences
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
    (dict(luma_scale=0), "luma_scale"), (dict(luma_detail=2.0), "luma_detail"),
    (dict(where_low=0.8, where_high=0.4), "where_low"),
    (dict(where_sigma=-1.0), "where_sigma"), (dict(where_high=2.0), "where_high"),
    (dict(w_others="drop"), "w_others"),
    (dict(where_pixel_low=0.5, where_pixel_high=0.5), "where_pixel_low"),
    (dict(where_pixel_sigma=-1.0), "where_pixel_sigma"),
    (dict(colour_share=1.5), "colour_share")])
def test_bad_where_settings_are_one_line_naming_the_field(overrides, field):
  with pytest.raises(run_state.RunError, match=f"--config.{field}"):
    kit.validate(tiny(**overrides))


def test_the_official_variant_keeps_the_papers_global_edit():
  config = synthetic.get_config("official")
  assert config.where == "off" and config.chroma_scale == 1 and config.w_others == "keep"
  assert config.luma_scale == 1 and config.colour_share == 0 and not config.where_pixels
  default = synthetic.get_config()
  assert default.where == "features" and default.chroma_scale > 1 and default.luma_scale > 1
  assert default.w_others == "project" and default.colour_share > 0 and default.where_pixels


def test_luma_flags_and_pixel_masks_read_each_items_neighbours_pixel_difference():
  """Per item (edit-major) the difference mean target − mean source (a combined edit: the sum of
  its parts'); its luminance flag is 1 where it keeps ≥ luma_detail of its luminance energy finer
  than luma_scale pixels; its pixel mask follows its norm."""
  from dfi_jax.data import sources
  from dfi_jax.dfi import feature_bank
  from dfi_jax.dfi import neighbours as neighbours_lib
  size = 16
  yy, xx = np.mgrid[0:size, 0:size] / size
  blob = np.repeat(np.exp(-((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.2)[..., None], 3, -1)
  lines = np.zeros((size, size, 3))
  lines[4, 2:14] = lines[11, 2:14] = 1.0
  plain = np.full((size, size, 3), 0.5)
  images = np.stack([plain, plain + 0.3 * blob, plain - 0.4 * lines]).astype(np.float32)
  edits = (sources.Edit("tone", "tone"), sources.Edit("lines", "lines"))
  bank = sources.Bank(images, np.zeros((3, 2), bool), ("tone", "lines"), ["a", "b", "c"], edits)
  # Two test images: tone's targets are the blob for both; lines' are the lines for image 0
  # and the blob for image 1 (its neighbours differ).
  sets = {"tone": neighbours_lib.Neighbours(np.array([[0], [0]]), np.array([[1], [1]])),
          "lines": neighbours_lib.Neighbours(np.array([[0], [0]]), np.array([[2], [1]]))}
  nb = feature_bank.Neighbourhood(sets, np.arange(3), None)
  both = sources.Edit("tone+lines", "tone")
  diffs = differences.of(nb, [kit.parts(bank, e) for e in edits + (both,)], images)
  assert len(diffs.by_key) == 4  # tone's two items share their neighbours, hence one difference
  np.testing.assert_allclose(diffs.by_key[diffs.keys[2]], images[2] - images[0])
  np.testing.assert_allclose(diffs.by_key[diffs.keys[4]], images[1] + images[2] - 2 * images[0],
                             atol=1e-6)
  np.testing.assert_allclose(diffs.by_key[diffs.keys[5]], 2 * (images[1] - images[0]))
  np.testing.assert_array_equal(differences.luma_flags(tiny(luma_scale=2, luma_detail=0.01),
                                                       diffs), [0, 0, 1, 0, 1, 0])
  assert differences.luma_flags(tiny(luma_scale=2, luma_detail=0.0), diffs).all()
  assert differences.luma_flags(tiny(luma_scale=1), diffs) is None
  # The pixel masks: each item's own difference's (lines for item 2, the blob for item 3).
  assert differences.pixel_where(tiny(), diffs, None) is None  # where_pixels off
  masks = differences.pixel_where(tiny(where_pixels=True, where_pixel_sigma=0.0), diffs, None)
  assert masks.shape == (6, size, size)
  assert masks[2, 4, 8] == 1.0 and masks[2, 8, 8] == 0.0 and masks[3, 8, 8] == 1.0
  np.testing.assert_array_equal(masks[1], masks[3])  # the same neighbours, the same mask
  # With coarse luminance flags (tone's items, the combined ones) the mask is all ones; own
  # photos get none.
  gating = tiny(where_pixels=True, where_pixel_sigma=0.0, luma_scale=2, luma_detail=0.01)
  gated = differences.pixel_where(gating, diffs, differences.luma_flags(gating, diffs))
  assert (gated[[0, 1, 3, 5]] == 1).all()
  np.testing.assert_array_equal(gated[[2, 4]], masks[[2, 4]])
  assert differences.pixel_where(tiny(where_pixels=True), diffs, None, own_photos=True) is None


def test_coarse_luminance_reaches_the_run_by_each_items_flag(tmp_path):
  """luma_detail 0 flags every item per pixel: the run then equals luma_scale 1; luma_detail 1
  flags none: the luminance is coarse and the edits differ."""
  base = dict(where="features", chroma_scale=2, iterations=4)
  fine = edit_run.run(tiny(luma_scale=2, luma_detail=0.0, **base), tmp_path / "fine")
  paper = edit_run.run(tiny(luma_scale=1, **base), tmp_path / "paper")
  coarse = edit_run.run(tiny(luma_scale=2, luma_detail=1.0, **base), tmp_path / "coarse")
  loss = lambda record: np.array([row["loss"] for row in record["per_image"]])  # noqa: E731
  np.testing.assert_allclose(loss(fine), loss(paper), rtol=1e-4)
  assert np.abs(loss(coarse) - loss(paper)).max() > 1e-3 * np.abs(loss(paper)).max()


def test_the_pixel_mask_narrows_the_where_mask_in_a_run(tmp_path):
  """where_pixels multiplies each item's where mask by its neighbours' pixel mask: the change
  outside the attribute's region falls (the items' masks reach the reverse map)."""
  base = dict(where="features", chroma_scale=2)
  wide = edit_run.run(tiny(**base), tmp_path / "wide")
  narrow = edit_run.run(tiny(where_pixels=True, **base), tmp_path / "narrow")
  assert narrow["settings"]["where_pixels"] is True
  assert _outside(narrow) < 0.95 * _outside(wide)  # 0.89 measured (a 40-face bank: broad masks)



def test_colour_flags_turn_off_the_chroma_of_thin_colourless_differences():
  """0 (luminance only) for an item whose difference keeps < colour_share of its energy in
  chroma and whose luminance is per pixel; a smooth tone change keeps its colour (greying is a
  change of colour); colour_share 0 is off."""
  size = 16
  yy, xx = np.mgrid[0:size, 0:size] / size
  blob = np.repeat(np.exp(-((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.2)[..., None], 3, -1)
  grey_lines = np.zeros((size, size, 3), np.float32)
  grey_lines[4, 2:14] = grey_lines[11, 2:14] = -0.4
  red_lines = grey_lines * np.array([-1.0, 0.5, 0.5], np.float32)  # much of it is chroma
  diffs = differences.Differences(["grey", "red", "tone", "grey"],
                                  dict(grey=grey_lines, red=red_lines, tone=0.3 * blob))
  config = tiny(luma_scale=2, luma_detail=0.01, colour_share=0.1)
  assert differences.needed(config)
  fine = differences.luma_flags(config, diffs)
  np.testing.assert_array_equal(differences.colour_flags(config, diffs, fine), [0, 1, 1, 0])
  np.testing.assert_array_equal(  # without coarse luminance the smooth tone is colourless too
      differences.colour_flags(tiny(luma_scale=1, colour_share=0.1), diffs, None), [0, 1, 0, 0])
  assert differences.colour_flags(tiny(luma_scale=2, colour_share=0.0), diffs, None) is None
  assert not differences.needed(tiny(luma_scale=1, colour_share=0.0))


def test_a_colourless_edit_is_solved_in_luminance_only_in_a_run(tmp_path):
  """colour_share 1 flags every per-pixel item colourless: the saved edits change the
  luminance and (up to the PNG's rounding and the clip to [0, 1]) no chroma; 0 keeps it."""
  from dfi_jax.data import image_io
  from dfi_jax.dfi import where as where_lib
  base = dict(where="features", chroma_scale=2, iterations=4)
  runs = {share: edit_run.run(tiny(colour_share=share, **base), tmp_path / str(share))
          for share in (0.0, 1.0)}
  assert runs[1.0]["settings"]["colour_share"] == 1.0

  def chroma(share):
    out = []
    for row in runs[share]["per_image"]:
      x = image_io.load_image(str(tmp_path / str(share) / "originals" / f"{row['image']}.png"))
      z = image_io.load_image(str(tmp_path / str(share) / "edits" /
                                  f"{row['image']}__{row['attribute']}__d0.8.png"))
      out.append(np.abs((z - x) @ where_lib.YCC_FROM_RGB.T)[..., 1:].mean())
    return np.mean(out)

  assert chroma(1.0) < 0.2 * chroma(0.0)
