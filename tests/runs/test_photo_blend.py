"""Pasting an own photo's face change back (dfi_jax/runs/photo_blend.py): its light and dark,
only where it is strong, both sides of a face together."""

import ml_collections
import numpy as np
import pytest

from dfi_jax.runs import kit
from dfi_jax.runs import photo_blend
from dfi_jax.runs import photos
from experiments.configs import synthetic

BANK = 64


def tiny(**overrides):
  config = synthetic.get_config("tiny")
  config.update(overrides)
  return config


def test_the_blend_pastes_the_changes_light_and_dark_where_it_is_strong():
  rng = np.random.default_rng(0)
  square = rng.uniform(0.2, 0.8, (BANK, BANK, 3)).astype(np.float32)
  change = np.zeros_like(square)
  change[40:50, 20:44] = (-0.3, -0.1, 0.2)  # strong and coloured: a "moustache"
  change[:10] += (0.0, 0.03, -0.02)  # weak, elsewhere
  plain = photo_blend.blended_change(square, square + change, photo_blend.Blend())
  np.testing.assert_allclose(plain, change, atol=1e-6)  # the default pastes it as it is
  grey = photo_blend.blended_change(square, square + change, photo_blend.Blend(chroma=0.0))
  np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-6)  # no colour
  np.testing.assert_allclose(grey[..., 1], grey[..., 2], atol=1e-6)
  luma = lambda c: c @ np.array([0.299, 0.587, 0.114], np.float32)  # noqa: E731
  np.testing.assert_allclose(luma(grey), luma(change), atol=1e-6)  # the light and dark kept
  focused = photo_blend.blended_change(square, square + change,
                                       photo_blend.Blend(focus=True, chroma=0.0))
  np.testing.assert_allclose(focused[43:47, 26:38], grey[43:47, 26:38], atol=1e-6)
  assert np.abs(focused[:10]).max() == 0.0  # the weak change is dropped
  config = tiny(photo_chroma=0.25, where="features", photo_focus_low=0.2, photo_focus_high=0.3)
  # the photo's own ramp
  assert photo_blend.blend_for(config) == photo_blend.Blend(True, 0.2, 0.3, 0.25)
  assert not photo_blend.blend_for(tiny()).focus  # where off: no focus
  bare = ml_collections.ConfigDict(dict(where="features"))  # a config without the fields
  assert photo_blend.blend_for(bare) == photo_blend.Blend(True, 0.6, 0.9, 1.0)


def test_mirrored_reflects_about_the_midline():
  image = np.zeros((8, 40), np.float32)
  image[3, 10] = 1.0
  np.testing.assert_allclose(photo_blend.mirrored(image, 20.0)[3, 30], 1.0)  # 10 -> 2 × 20 − 10
  np.testing.assert_allclose(photo_blend.mirrored(image, 20.0).sum(), 1.0)
  half = photo_blend.mirrored(image, 20.25)  # between pixels: shared by 30 and 31
  np.testing.assert_allclose(half[3, 30:32], [0.5, 0.5], atol=1e-6)
  assert photo_blend.mirrored(image, 2.0).sum() == 0.0  # reflected out of the image


def test_the_mirrored_focus_keeps_both_sides_of_a_face_together():
  """Two lenses, one 60 % as strong as the other: the plain focus (0.6 to 0.9 of the maximum)
  drops the weaker; mirrored about the face's midline both are pasted."""
  square = np.full((BANK, BANK, 3), 0.5, np.float32)
  change = np.zeros_like(square)
  change[28:34, 16:24] = -0.2  # the left lens
  change[28:34, 40:48] = -0.12  # the right lens (the midline is x = 31.5)
  plain = photo_blend.blended_change(square, square + change,
                                     photo_blend.Blend(True, 0.6, 0.9, 0.0))
  mirror = photo_blend.blended_change(square, square + change,
                                      photo_blend.Blend(True, 0.6, 0.9, 0.0, mirror=31.5))
  assert np.abs(plain[30:32, 42:46]).max() < 1e-6  # dropped
  np.testing.assert_allclose(mirror[30:32, 42:46], change[30:32, 42:46], atol=1e-6)  # kept
  np.testing.assert_allclose(mirror[30:32, 18:22], plain[30:32, 18:22], atol=1e-6)
  assert photo_blend.blend_for(tiny(where="features"), 31.5).mirror == 31.5
  unmirrored = tiny(where="features", photo_focus_mirror=False)
  assert photo_blend.blend_for(unmirrored, 31.5).mirror is None
  frame = photos.synthetic_frame(tiny(image_size=BANK, bank_size=50))
  target = photos._subset(frame.points)
  eyes = target[:2, 0]  # the frame's midline lies between its eyes
  assert eyes.min() < photos.midline(target) < eyes.max()
  assert abs(photos.midline(target) - eyes.mean()) < 1.0


def test_the_photo_focus_ramp_drops_the_weak_tail_and_keeps_the_strong_core():
  rng = np.random.default_rng(1)
  square = rng.uniform(0.2, 0.8, (BANK, BANK, 3)).astype(np.float32)
  change = np.zeros_like(square)
  change[20:44, 20:44] = 0.2  # the edit's core
  change[8:56, 8:56] += 0.15  # its weaker tail around it (rings on the cheeks)
  share = lambda c: np.abs(c[8:56, 8:56]).sum() / np.abs(c[20:44, 20:44]).sum()  # noqa: E731
  wide = photo_blend.blended_change(square, square + change,
                                    photo_blend.Blend(True, 0.35, 0.7, 1.0))
  tight = photo_blend.blended_change(square, square + change,
                                     photo_blend.Blend(True, 0.6, 0.9, 1.0))
  assert np.abs(tight[12:16, 12:52]).max() == 0.0  # the tail is dropped
  assert np.abs(wide[12:16, 12:52]).min() > 0.0  # the where mask's ramp kept it
  np.testing.assert_allclose(tight[28:36, 28:36], change[28:36, 28:36], atol=1e-6)
  assert share(tight) < share(wide)


@pytest.mark.parametrize("fields,named", [
    (dict(photo_focus_low=0.9, photo_focus_high=0.6), "photo_focus_low"),
    (dict(photo_focus_high=1.5), "photo_focus_high"),
    (dict(photo_focus_low=-0.1), "photo_focus_low")])
def test_bad_photo_focus_settings_are_named(fields, named):
  with pytest.raises(kit.RunError, match=f"--config.{named}"):
    kit.validate(tiny(**fields))
