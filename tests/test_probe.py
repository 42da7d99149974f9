"""The attribute probe: it learns separable labels and scores edits as documented."""

import numpy as np

from dfi_jax import probe as probe_lib


def test_probe_learns_a_linearly_separable_attribute():
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(200, 32, 32, 3)).astype(np.float32)
  labels = np.zeros((200, 2), bool)
  labels[:, 0] = rng.random(200) < 0.5
  labels[:, 1] = rng.random(200) < 0.5
  images[labels[:, 0], :8] += 0.5  # attribute 0 brightens the top rows
  images[labels[:, 1], :, :8, 2] += 0.5  # attribute 1 adds blue on the left
  feats = probe_lib.pixel_features(images)
  assert feats.shape == (200, 16 * 16 * 3)
  probe = probe_lib.fit(feats, labels, "pixels")
  assert (probe_lib.predict(probe, feats) == labels).mean() > 0.97


def test_edit_scores():
  before = np.array([False, True, False])
  assert probe_lib.edit_scores(before, np.array([True, True, False]), 0) == (True, 1.0)
  assert probe_lib.edit_scores(before, np.array([False, False, False]), 0) == (False, 0.5)
