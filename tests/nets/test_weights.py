"""Native weights format: round trip, provenance, clear errors."""

import json

import numpy as np
import pytest

import jax

from dfi_jax.nets import pretrained
from dfi_jax.nets import weights as weights_lib


def _make(tmp_path, **kw):
  params = weights_lib.init_random(jax.random.key(0), width=1 / 16)
  prov = weights_lib.provenance_for("random", "test weights", "pytest", params, width=1 / 16, **kw)
  return params, prov


def test_round_trip_is_identical_and_keeps_provenance(tmp_path):
  params, prov = _make(tmp_path, extra_note="kept")
  path = weights_lib.save_weights(tmp_path / "w.npz", params, prov)
  loaded, meta = weights_lib.load_weights(path)
  for layer in params:
    for name in params[layer]:
      np.testing.assert_array_equal(loaded[layer][name], params[layer][name])
  assert meta["extra_note"] == "kept" and meta["kind"] == "random"
  assert meta["layers"][-1] == "conv5_1"
  net = weights_lib.model_for(meta)
  assert net.width == pytest.approx(1 / 16) and net.pooling == "floor"


def test_float16_storage_loads_as_float32(tmp_path):
  params, prov = _make(tmp_path)
  loaded, _ = weights_lib.load_weights(
      weights_lib.save_weights(tmp_path / "w.npz", params, prov, dtype="float16"))
  assert loaded["conv1_1"]["kernel"].dtype == np.float32
  np.testing.assert_allclose(loaded["conv1_1"]["kernel"], params["conv1_1"]["kernel"], rtol=1e-3,
                             atol=1e-3)


def test_clear_errors(tmp_path):
  with pytest.raises(weights_lib.WeightsError, match="not found: put a dfi_jax weights file"):
    weights_lib.load_weights(tmp_path / "missing.npz")
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(weights_lib.WeightsError, match="junk.npz is not a readable"):
    weights_lib.load_weights(tmp_path / "junk.npz")
  np.savez(tmp_path / "plain.npz", a=np.zeros(3))
  with pytest.raises(weights_lib.WeightsError, match="no provenance record"):
    weights_lib.load_weights(tmp_path / "plain.npz")
  params, prov = _make(tmp_path)
  params["conv2_1"]["kernel"] = params["conv2_1"]["kernel"][..., :3]
  with pytest.raises(weights_lib.WeightsError, match=r"conv2_1/kernel has shape \(3, 3, 4, 3\), expected \(3, 3, 4, 8\)"):
    weights_lib.save_weights(tmp_path / "bad.npz", params, prov)


def test_forced_mismatching_setting_warns_naming_both(tmp_path):
  _, prov = _make(tmp_path)
  with pytest.warns(UserWarning, match="pooling='ceil' forced, but the weights were made for pooling='floor'"):
    weights_lib.model_for(prov, pooling="ceil")


def test_shipped_random_test_weights_are_small_and_labelled():
  path = pretrained.resolve("random")
  assert path == pretrained.RANDOM_WEIGHTS and path.stat().st_size <= 10 * 2 ** 20
  _, meta = weights_lib.load_weights(path)
  assert meta["kind"] == "random" and "ImageNet" not in meta["description"]
  assert meta["architecture"] == "vgg19"
  assert meta["made_by"].startswith(
      "python -m experiments.train_features --out=dfi_jax/assets/random_vgg19_quarter.npz")
  json.dumps(meta)
