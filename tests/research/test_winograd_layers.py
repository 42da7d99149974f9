"""research/winograd_layers.py: the per-layer table behind `model.WINOGRAD_MIN_SHARE`."""

from research import winograd_layers


def test_layers_follow_the_network_and_its_pools():
  rows = winograd_layers.layers(64, "vgg16")
  assert rows[0] == ("conv1_1", 64, 3, 64)
  assert ("conv3_2", 16, 256, 256) in rows and rows[-1] == ("conv5_1", 4, 512, 512)
  assert [r[0] for r in winograd_layers.layers(200, "vgg19")][-5:] == [
      "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1"]


def test_measure_times_both_paths_on_every_layer_and_they_agree():
  rows = winograd_layers.measure(16, 1, "vgg16", repeats=1, width=1 / 16)
  assert [r["layer"] for r in rows] == [r[0] for r in winograd_layers.layers(16, "vgg16")]
  assert rows[-1]["side"] == 1
  for r in rows:
    assert r["direct_ms"] > 0 and r["winograd_ms"] > 0
    assert r["error"] < 1e-4, r
