"""Fast mode's decoder: shapes, training, files, and the warm start in the edit run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from dfi_jax.dfi import decoder as decoder_lib
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from dfi_jax.data import faces
from dfi_jax.dfi import features as features_lib
from dfi_jax.nets import pretrained
from dfi_jax.base import run_state
from dfi_jax.nets import weights as weights_lib
from experiments.configs import synthetic

ROOT = Path(__file__).resolve().parents[2]
TINY_RUN = "experiments/configs/synthetic.py:tiny"  # taps conv2_1, conv3_1 at 32²
TINY_TAPS = ("conv2_1", "conv3_1")


def run_module(module, *args):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                        text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def phi_net():
  """The default weights with the tiny run's taps: `(net, params, feature spec at 32²)`."""
  params, prov = weights_lib.load_weights(pretrained.RANDOM_WEIGHTS)
  net = weights_lib.model_for(prov, taps=TINY_TAPS)
  return net, params, prov, features_lib.feature_spec(net, params, (32, 32))


@pytest.fixture(scope="module")
def images():
  return faces.generate(range(100, 108), 32)[0]


def make_decoder_file(path, phi_net, seed=0, taps=None):
  net, params, prov, fspec = phi_net
  if taps is not None:
    fspec = features_lib.feature_spec(weights_lib.model_for(prov, taps=taps), params, (32, 32))
  spec = decoder_lib.spec_for(fspec, 32, channels=4)
  dparams = decoder_lib.init(jax.random.key(seed), spec)
  prov = decoder_lib.provenance_for(spec, pretrained.RANDOM_WEIGHTS, prov, "test")
  decoder_lib.save(path, dparams, prov)
  return dparams, spec


def test_shapes_dtypes_and_range(phi_net, images):
  net, params, _, fspec = phi_net
  spec = decoder_lib.spec_for(fspec, 32, channels=8)
  dparams = decoder_lib.init(jax.random.key(0), spec)
  phi = features_lib.make_phi(net)(params, jnp.asarray(images[:3]))
  out = decoder_lib.apply(dparams, phi, spec)
  assert out.shape == (3, 32, 32, 3) and out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  # A dict of taps gives the same images as the flat φ.
  taps = net.apply({"params": params}, jnp.asarray(images[:3]))
  np.testing.assert_allclose(decoder_lib.apply(dparams, taps, spec), out, atol=1e-6)
  with pytest.raises(ValueError, match=r"phi must be \[B, "):
    decoder_lib.apply(dparams, phi[:, :-1], spec)
  with pytest.raises(ValueError, match="larger than the image"):
    decoder_lib.spec_for(fspec, 4)


def test_warm_start_modes(phi_net, images):
  net, params, _, fspec = phi_net
  spec = decoder_lib.spec_for(fspec, 32, channels=8)
  dparams = decoder_lib.init(jax.random.key(0), spec)
  x = images[:2]
  phi_x = np.asarray(features_lib.make_phi(net)(params, jnp.asarray(x)))
  decoded = decoder_lib.warm_start(dparams, spec, phi_x, x, mode="decoded")
  np.testing.assert_allclose(decoded, decoder_lib.apply(dparams, phi_x, spec), atol=1e-6)
  # With t = φ(x) the change D(t) − D(φ(x)) is zero: the start is x itself.
  change = decoder_lib.warm_start(dparams, spec, phi_x, x, phi_x, mode="change")
  np.testing.assert_allclose(change, x, atol=1e-6)
  with pytest.raises(ValueError, match="mode must be one of"):
    decoder_lib.warm_start(dparams, spec, phi_x, x, mode="nope")


@pytest.mark.parametrize("feature_weight,edit_delta", [(0.0, 0.0), (1e-4, 0.0), (1e-4, 1.0)])
def test_training_reduces_the_loss(phi_net, images, feature_weight, edit_delta):
  net, params, _, fspec = phi_net
  spec = decoder_lib.spec_for(fspec, 32, channels=8)
  optimizer = optax.adam(1e-2)
  state = decoder_lib.init_train_state(decoder_lib.init(jax.random.key(1), spec), optimizer)
  step = decoder_lib.make_train_step(net, spec, optimizer, feature_weight, edit_delta,
                                     tv_weight=1e-5)
  key = jax.random.key(0)  # the same edit targets every step, so losses are comparable
  state, first = step(state, params, images, key)
  for _ in range(15):
    state, metrics = step(state, params, images, key)
  assert int(state.step) == 16
  assert ("objective" in metrics) == bool(feature_weight)
  assert float(metrics["loss"]) < 0.7 * float(first["loss"]), (first, metrics)


def test_save_load_round_trip(tmp_path, phi_net, images):
  path = tmp_path / "d.npz"
  dparams, spec = make_decoder_file(path, phi_net)
  loaded, spec2, prov = decoder_lib.load(path)
  assert spec2 == spec
  assert prov["format"] == decoder_lib.FORMAT and prov["made_by"] == "test"
  assert prov["taps"] == list(TINY_TAPS) and prov["image_size"] == 32
  assert prov["weights_sha256"] == run_state.file_sha256(
      pretrained.RANDOM_WEIGHTS)
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(dparams))
  net, params, _, _ = phi_net
  phi = features_lib.make_phi(net)(params, jnp.asarray(images[:2]))
  np.testing.assert_array_equal(decoder_lib.apply(loaded, phi, spec2),
                                decoder_lib.apply(dparams, phi, spec))
  assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind
  # Compatible with its own φ; refused for another weights file or image size.
  decoder_lib.check_compatible(prov, spec.features, 32, prov["weights_sha256"], "d.npz")
  with pytest.raises(decoder_lib.DecoderError, match="weights sha256"):
    decoder_lib.check_compatible(prov, spec.features, 32, "0" * 64, "d.npz")
  with pytest.raises(decoder_lib.DecoderError, match="image_size"):
    decoder_lib.check_compatible(prov, spec.features, 64, prov["weights_sha256"], "d.npz")


def test_bad_files_raise_one_line(tmp_path):
  with pytest.raises(decoder_lib.DecoderError, match="not found: expected a .npz") as e:
    decoder_lib.load(tmp_path / "missing.npz")
  assert "\n" not in str(e.value)
  with pytest.raises(decoder_lib.DecoderError, match="format 'dfi_jax-weights-v1'"):
    decoder_lib.load(pretrained.RANDOM_WEIGHTS)  # a VGG weights file, not a decoder
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(decoder_lib.DecoderError, match="not a readable"):
    decoder_lib.load(tmp_path / "junk.npz")


def test_train_decoder_command(tmp_path):
  out = tmp_path / "d.npz"
  proc = run_module("experiments.train_decoder", f"--out={out}",
                    "--config=experiments/configs/decoder.py:tiny")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "train decoder" in proc.stderr  # the progress bar
  _, spec, prov = decoder_lib.load(out)
  assert spec.features.taps == TINY_TAPS and prov["training"]["steps"] == 6
  summary = prov["training_summary"]
  assert summary["held_out_pixel_mse"] < summary["untrained_held_out_pixel_mse"]
  assert out.with_suffix(".png").exists() and not out.with_suffix(".resume.npz").exists()
  again = run_module("experiments.train_decoder", f"--out={out}",
                     "--config=experiments/configs/decoder.py:tiny")
  assert again.returncode == 1
  assert again.stderr.strip().count("\n") == 0 and "--overwrite" in again.stderr


def transform(workdir, *args):
  return run_module("experiments.transform", f"--workdir={workdir}", f"--config={TINY_RUN}",
                    "--attributes=smiling", *args)


def run_in_process(workdir, **overrides):
  """The tiny edit run in this process (its compiled solver is shared through
  `reconstruct.cached` with every other in-process tiny run)."""
  config = synthetic.get_config("tiny")
  with config.unlocked():
    for key, value in overrides.items():
      setattr(config, key, value)
  return edit_run.run(config, workdir, attributes=["smiling"])


def test_warm_start_in_the_edit_run(tmp_path, phi_net):
  path = tmp_path / "d.npz"
  make_decoder_file(path, phi_net, seed=0)
  run_in_process(tmp_path / "cold")
  run_in_process(tmp_path / "warm", decoder=str(path))
  manifest = json.loads((tmp_path / "warm" / "run.json").read_text())
  assert manifest["settings"]["decoder_sha256"] == run_state.file_sha256(path)
  # The decoder's start changes the first δ's result (4 iterations do not erase the start).
  name = sorted(p.name for p in (tmp_path / "cold" / "edits").glob("*__d0.4.png"))[0]
  a = np.asarray(Image.open(tmp_path / "cold" / "edits" / name))
  b = np.asarray(Image.open(tmp_path / "warm" / "edits" / name))
  assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0
  # Same path, other decoder content: the resumed run is refused, naming the sha.
  make_decoder_file(path, phi_net, seed=1)
  with pytest.raises(ValueError, match="decoder_sha256"):
    run_in_process(tmp_path / "warm", decoder=str(path))


def test_bad_decoder_is_one_clear_line(tmp_path):
  """The command-line contract: one line on stderr, exit status 1, naming the flag."""
  path = tmp_path / "missing.npz"
  proc = transform(tmp_path / "run", f"--config.decoder={path}")
  assert proc.returncode == 1
  line = proc.stderr.strip().splitlines()[-1]
  assert proc.stderr.strip().count("\n") == 0, proc.stderr
  assert line.startswith("error:") and f"--config.decoder={path}" in line
  assert "expected a .npz" in line


@pytest.mark.parametrize("kind", ["weights", "other_taps"])
def test_bad_decoder_is_refused_before_any_work(tmp_path, phi_net, kind):
  path = tmp_path / "d.npz"
  if kind == "weights":
    path = pretrained.RANDOM_WEIGHTS
  else:
    make_decoder_file(path, phi_net, taps=("conv1_2", "conv3_1"))
  with pytest.raises(kit.RunError) as e:
    run_in_process(tmp_path / "run", decoder=str(path))
  message = str(e.value)
  assert "\n" not in message and message.startswith(f"--config.decoder={path}")
  assert {"weights": "expected 'dfi_jax-decoder-v1'", "other_taps": "trained for another φ"}[kind] in message
  assert not (tmp_path / "run" / "run.json").exists()


def test_fast_mode_experiment(tmp_path, phi_net):
  path = tmp_path / "d.npz"
  make_decoder_file(path, phi_net)
  proc = run_module("research.fast_mode", f"--workdir={tmp_path / 'fm'}",
                    f"--decoder={path}", f"--config={TINY_RUN}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  record = json.loads((tmp_path / "fm" / "fast_mode.json").read_text())
  assert [r["start"] for r in record["rows"]] == ["x (cold)", "decoder (decoded)",
                                                  "decoder (change)"]
  cold = record["rows"][0]
  assert cold["reached"] == cold["images"] and cold["iterations_max"] <= record["iterations"]
  assert "target ≥ 3× fewer iterations" in (tmp_path / "fm" / "fast_mode.md").read_text()
