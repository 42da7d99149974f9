"""The attribute probe: it generalises to held-out images, and scores edits as documented."""

import numpy as np

from dfi_jax.eval import probe as probe_lib


def test_probe_reads_held_out_images_and_random_labels_stay_at_chance():
  # Far more samples (3000) than features (16²·3 = 768), scored on 1000 images it never saw:
  # a probe that only memorised its training set scores 0.5 there, as the two random-label
  # columns (fitted in the same call: each column is its own regression) must.
  rng = np.random.default_rng(0)
  n_train, n = 3000, 4000
  images = rng.uniform(size=(n, 32, 32, 3)).astype(np.float32)
  # A random brightness per image swamps the mean difference: the probe has to be fitted (one
  # L-BFGS step along the gradient scores about 0.55), not just pointed at the signal.
  images += rng.normal(0, 0.3, (n, 1, 1, 1)).astype(np.float32)
  labels = rng.random((n, 4)) < 0.5  # columns 2, 3: random labels, nothing in the image
  images[labels[:, 0], :8] += 0.1  # attribute 0 brightens the top rows
  images[labels[:, 1], :, :8, 2] += 0.1  # attribute 1 adds blue on the left
  feats = probe_lib.pixel_features(images)
  assert feats.shape == (n, 16 * 16 * 3)
  probe = probe_lib.fit(feats[:n_train], labels[:n_train], "pixels")
  accuracy = (probe_lib.predict(probe, feats[n_train:]) == labels[n_train:]).mean(0)
  assert (accuracy[:2] > 0.95).all(), accuracy
  assert (np.abs(accuracy[2:] - 0.5) < 0.06).all(), accuracy  # 1000 samples: σ = 0.016


def test_edit_scores():
  before = np.array([False, True, False])
  assert probe_lib.edit_scores(before, np.array([True, True, False]), 0) == (True, 1.0)
  assert probe_lib.edit_scores(before, np.array([False, False, False]), 0) == (False, 0.5)
