"""Regenerates tests/fixtures/port/: small VGG checkpoints written by the real libraries.

  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy h5py protobuf
  /tmp/torchvenv/bin/python tools/make_port_fixtures.py

Needs torch (the .pth files and the activations torch computes for them), h5py (Keras 2's
HDF5 layout) and protobuf (the .caffemodel files, serialized by protobuf itself from a schema
built here with caffe.proto's field numbers). It does not import dfi_jax, so the fixtures do
not depend on the code they test. All weights are random with fixed seeds; channel counts are
VGG19's divided by 16, 32 or 64 to keep the files small. The tests never need torch.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "port"
INPUT_HW = (37, 45)  # odd, so floor and ceil pooling differ
# torchvision's VGG16 and VGG19 `features`, written out: each conv as (name, width), "M" for a
# 2x2 max pool. Names and widths are the published architectures, not derived from a config.
LAYERS = {
    "vgg16": (("conv1_1", 64), ("conv1_2", 64), "M",
              ("conv2_1", 128), ("conv2_2", 128), "M",
              ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), "M",
              ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), "M",
              ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), "M"),
    "vgg19": (("conv1_1", 64), ("conv1_2", 64), "M",
              ("conv2_1", 128), ("conv2_2", 128), "M",
              ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), "M",
              ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), ("conv4_4", 512), "M",
              ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), ("conv5_4", 512), "M"),
}
TAPS = ("conv3_1", "conv4_1", "conv5_1")
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def ch(base: int, divisor: int) -> int:
  return max(1, round(base / divisor))


def convs(layers) -> list[tuple[str, int]]:
  """The (name, width) of each conv of `layers` (a `LAYERS` entry), in order."""
  return [layer for layer in layers if layer != "M"]


def fixed_input(seed: int = 0) -> np.ndarray:
  """`[1, 37, 45, 3]` float32 RGB in [0, 1]: a smooth pattern plus noise."""
  rng = np.random.default_rng(seed)
  h, w = INPUT_HW
  yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
  base = np.stack([yy, xx, 0.5 + 0.5 * np.sin(6 * yy + 4 * xx)], -1)
  return np.clip(0.7 * base + 0.3 * rng.random((h, w, 3)), 0, 1)[None].astype(np.float32)


# -- torch ---------------------------------------------------------------------------------

def _init_convs(module: "nn.Module") -> None:
  """He-normal kernels, N(0, 0.1) biases: activations of every size, so every tap is checked."""
  for m in module.modules():
    if isinstance(m, nn.Conv2d):
      nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
      nn.init.normal_(m.bias, 0.0, 0.1)


def _torchvision_input(images: np.ndarray) -> "torch.Tensor":
  """NHWC RGB [0, 1] `images` -> NCHW, normalised as torchvision's VGGs expect."""
  x = torch.from_numpy(images).permute(0, 3, 1, 2)
  return (x - torch.tensor(TORCHVISION_MEAN).view(1, 3, 1, 1)) / torch.tensor(
      TORCHVISION_STD).view(1, 3, 1, 1)


class TorchVGG(nn.Module):
  """torchvision's VGG layout (features.N, classifier.N) at reduced width."""

  def __init__(self, layers, divisor: int, batch_norm: bool = False):
    super().__init__()
    self.layers = layers
    modules, in_ch = [], 3
    for layer in layers:
      if layer == "M":
        modules.append(nn.MaxPool2d(2, 2))
      else:
        out = ch(layer[1], divisor)
        modules.append(nn.Conv2d(in_ch, out, 3, padding=1))
        if batch_norm:
          modules.append(nn.BatchNorm2d(out))
        modules.append(nn.ReLU(inplace=True))
        in_ch = out
    self.features = nn.Sequential(*modules)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.classifier = nn.Sequential(nn.Linear(in_ch, 8), nn.ReLU(True), nn.Dropout(),
                                    nn.Linear(8, 8), nn.ReLU(True), nn.Dropout(),
                                    nn.Linear(8, 10))
    _init_convs(self)

  def taps(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """Post-ReLU activations at TAPS, NHWC, for RGB [0, 1] `images` (torchvision norm)."""
    x = _torchvision_input(images)
    names, out = iter(name for name, _ in convs(self.layers)), {}
    with torch.no_grad():
      for layer in self.features:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
          name = next(names)
        if isinstance(layer, nn.ReLU) and name in TAPS:
          out[name] = x.permute(0, 2, 3, 1).numpy().copy()
          if name == TAPS[-1]:
            break
    return out


class DFIVgg19g(nn.Module):
  """The official DFI PyTorch weights' layout (vgg19g-4aff041b.pth): named convs to conv5_1."""

  def __init__(self, divisor: int):
    super().__init__()
    blocks, in_ch = [], 3
    cuts = {"conv3_1": 0, "conv4_1": 1, "conv5_1": 2}
    current = collections.OrderedDict()
    for name, width in convs(LAYERS["vgg19"])[:13]:
      if name.endswith("_1") and name != "conv1_1":
        current[f"pool{int(name[4]) - 1}"] = nn.MaxPool2d(2, 2)
      out = ch(width, divisor)
      current[name] = nn.Conv2d(in_ch, out, 3, padding=1)
      current["relu" + name[4:]] = nn.ReLU(inplace=True)
      in_ch = out
      if name in cuts:
        blocks.append(nn.Sequential(current))
        current = collections.OrderedDict()
    self.features_1, self.features_2, self.features_3 = blocks
    _init_convs(self)

  def taps(self, images: np.ndarray) -> dict[str, np.ndarray]:
    x = _torchvision_input(images)
    out = {}
    with torch.no_grad():
      for name, block in zip(TAPS, (self.features_1, self.features_2, self.features_3)):
        x = block(x)
        out[name] = x.permute(0, 2, 3, 1).numpy().copy()
    return out


def with_views(state: dict) -> collections.OrderedDict:
  """The same values, but stored the way views are: a shared storage with an offset, a
  strided kernel and a non-contiguous (permuted) kernel."""
  state = collections.OrderedDict(state)
  b0, b2 = state["features.0.bias"], state["features.2.bias"]
  shared = torch.cat([b0, b2])
  state["features.0.bias"], state["features.2.bias"] = shared[:len(b0)], shared[len(b0):]
  w = state["features.5.weight"]
  interleaved = torch.zeros((2 * w.shape[0],) + tuple(w.shape[1:]))
  interleaved[1::2] = w
  state["features.5.weight"] = interleaved[1::2]  # offset I*9, stride 2*I*9 on axis 0
  w = state["features.10.weight"]
  state["features.10.weight"] = w.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)
  assert not state["features.10.weight"].is_contiguous()
  return state


def save_acts(path: Path, images: np.ndarray, acts: dict) -> None:
  np.savez_compressed(path, images=images, **acts)


def make_torch() -> None:
  torch.manual_seed(0)
  images = fixed_input()
  net = TorchVGG(LAYERS["vgg19"], 16).eval()
  torch.save(with_views(net.state_dict()), OUT / "vgg19_w16.pth")
  save_acts(OUT / "vgg19_w16_torch_acts.npz", images, net.taps(images))

  torch.manual_seed(1)
  net = TorchVGG(LAYERS["vgg19"], 32).eval()
  torch.save(net.state_dict(), OUT / "vgg19_w32_legacy.pth",
             _use_new_zipfile_serialization=False)
  save_acts(OUT / "vgg19_w32_legacy_torch_acts.npz", images, net.taps(images))

  torch.manual_seed(2)
  net = DFIVgg19g(32).eval()
  torch.save(net.state_dict(), OUT / "vgg19g_w32.pth")
  save_acts(OUT / "vgg19g_w32_torch_acts.npz", images, net.taps(images))

  torch.manual_seed(3)
  small = TorchVGG(LAYERS["vgg19"], 64).eval()
  state = small.state_dict()
  torch.save(TorchVGG(LAYERS["vgg16"], 64).state_dict(), OUT / "vgg16_w64.pth")
  torch.save(TorchVGG(LAYERS["vgg19"], 64, batch_norm=True).state_dict(),
             OUT / "vgg19_bn_w64.pth")
  torch.save({"state_dict": collections.OrderedDict(("module." + k, v) for k, v in
                                                    state.items()), "epoch": 3},
             OUT / "vgg19_w64_wrapped.pth")
  bad = collections.OrderedDict(state)
  bad["features.19.weight"] = torch.zeros(8, 5, 3, 3)  # conv4_1 expects (8, 4, 3, 3)
  torch.save(bad, OUT / "vgg19_w64_badshape.pth")
  missing = collections.OrderedDict((k, v) for k, v in state.items()
                                    if not k.startswith("features.12."))
  torch.save(missing, OUT / "vgg19_w64_missing.pth")
  extra = collections.OrderedDict(state)
  extra["features.37.weight"], extra["features.37.bias"] = torch.zeros(8, 8, 3, 3), torch.zeros(8)
  torch.save(extra, OUT / "vgg19_w64_extra.pth")
  torch.save(small, OUT / "vgg19_w64_model.pth")  # a whole pickled nn.Module: refused

  class TinyResNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 4, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(4)
      self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False))
      self.fc = nn.Linear(4, 10)

  torch.save(TinyResNet().state_dict(), OUT / "resnet_w64.pth")


# -- Keras ---------------------------------------------------------------------------------

def random_vgg(layers, divisor: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """name -> (HWIO kernel, bias) for the convs of `layers`, He-initialised, float32."""
  rng = np.random.default_rng(seed)
  params, in_ch = {}, 3
  for name, width in convs(layers):
    out = ch(width, divisor)
    kernel = rng.normal(0, np.sqrt(2.0 / (9 * in_ch)), (3, 3, in_ch, out)).astype(np.float32)
    params[name] = (kernel, rng.normal(0, 0.1, out).astype(np.float32))
    in_ch = out
  return params


def write_keras(path: Path, params: dict, top: bool) -> None:
  """Keras 2 `save_weights` HDF5 layout."""
  def strings(values):
    return np.array([v.encode("utf8") for v in values], dtype="S") if values else np.zeros(0)

  layers = ["input_1"]
  for name in params:
    b, c = name[4:].split("_")
    if c == "1" and b != "1":
      layers.append(f"block{int(b) - 1}_pool")
    layers.append(f"block{b}_conv{c}")
  layers.append(f"block{b}_pool")
  rng = np.random.default_rng(7)
  dense = {}
  if top:
    last = next(reversed(params.values()))[0].shape[-1]
    dense = {"fc1": (last * 49, 8), "fc2": (8, 8), "predictions": (8, 10)}
    layers += ["flatten"] + list(dense)
  with h5py.File(path, "w") as f:
    f.attrs["backend"] = b"tensorflow"
    f.attrs["keras_version"] = b"2.2.4"
    f.attrs["layer_names"] = strings(layers)
    for layer in layers:
      g = f.create_group(layer)
      if layer.startswith("block") and "_conv" in layer:
        name = "conv" + layer[5:].replace("_conv", "_")
        arrays = params[name]
      elif layer in dense:
        arrays = (rng.normal(0, 0.1, dense[layer]).astype(np.float32),
                  np.zeros(dense[layer][1], np.float32))
      else:
        g.attrs["weight_names"] = strings([])
        continue
      names = [f"{layer}/kernel:0", f"{layer}/bias:0"]
      g.attrs["weight_names"] = strings(names)
      for n, a in zip(names, arrays):
        g.create_dataset(n, data=a)


def make_keras() -> None:
  write_keras(OUT / "vgg19_w32_notop.h5", random_vgg(LAYERS["vgg19"], 32, 10), top=False)
  write_keras(OUT / "vgg19_w64_top.h5", random_vgg(LAYERS["vgg19"], 64, 11), top=True)


# -- Caffe ---------------------------------------------------------------------------------

def caffe_messages():
  """NetParameter & co. as protobuf classes, built from the needed subset of caffe.proto."""
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
  F = descriptor_pb2.FieldDescriptorProto
  fdp = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe",
                                           syntax="proto2")

  def message(name, fields, enums=None):
    m = fdp.message_type.add(name=name)
    for fname, number, ftype, label, type_name, packed in fields:
      f = m.field.add(name=fname, number=number, type=ftype, label=label)
      if type_name:
        f.type_name = type_name
      if packed:
        f.options.packed = True
    for ename, values in (enums or {}).items():
      e = m.enum_type.add(name=ename)
      for vname, number in values:
        e.value.add(name=vname, number=number)

  OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
  message("BlobShape", [("dim", 1, F.TYPE_INT64, REP, None, True)])
  message("BlobProto", [("shape", 7, F.TYPE_MESSAGE, OPT, ".caffe.BlobShape", False),
                        ("data", 5, F.TYPE_FLOAT, REP, None, True),
                        ("num", 1, F.TYPE_INT64, OPT, None, False),
                        ("channels", 2, F.TYPE_INT64, OPT, None, False),
                        ("height", 3, F.TYPE_INT64, OPT, None, False),
                        ("width", 4, F.TYPE_INT64, OPT, None, False)])
  message("LayerParameter", [("name", 1, F.TYPE_STRING, OPT, None, False),
                             ("type", 2, F.TYPE_STRING, OPT, None, False),
                             ("bottom", 3, F.TYPE_STRING, REP, None, False),
                             ("top", 4, F.TYPE_STRING, REP, None, False),
                             ("blobs", 7, F.TYPE_MESSAGE, REP, ".caffe.BlobProto", False)])
  message("V1LayerParameter",
          [("bottom", 2, F.TYPE_STRING, REP, None, False),
           ("top", 3, F.TYPE_STRING, REP, None, False),
           ("name", 4, F.TYPE_STRING, OPT, None, False),
           ("type", 5, F.TYPE_ENUM, OPT, ".caffe.V1LayerParameter.LayerType", False),
           ("blobs", 6, F.TYPE_MESSAGE, REP, ".caffe.BlobProto", False),
           ("blobs_lr", 7, F.TYPE_FLOAT, REP, None, False)],
          enums={"LayerType": [("NONE", 0), ("CONVOLUTION", 4), ("DATA", 5), ("DROPOUT", 6),
                               ("INNER_PRODUCT", 14), ("POOLING", 17), ("RELU", 18),
                               ("SOFTMAX", 20)]})
  message("NetParameter", [("name", 1, F.TYPE_STRING, OPT, None, False),
                           ("input", 3, F.TYPE_STRING, REP, None, False),
                           ("input_dim", 4, F.TYPE_INT64, REP, None, False),
                           ("layers", 2, F.TYPE_MESSAGE, REP, ".caffe.V1LayerParameter", False),
                           ("layer", 100, F.TYPE_MESSAGE, REP, ".caffe.LayerParameter", False)])
  pool = descriptor_pool.DescriptorPool()
  pool.Add(fdp)
  return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{n}"))
          for n in ("NetParameter", "BlobProto")}


def write_caffe(path: Path, convs: dict, *, v1: bool, fc: bool, net_name: str,
                blob_transform=None) -> None:
  """`convs`: name -> (OIHW kernel, bias). V1 files use legacy num/channels/height/width."""
  msgs = caffe_messages()
  net = msgs["NetParameter"](name=net_name)
  rng = np.random.default_rng(5)

  def blob(array, legacy):
    b = msgs["BlobProto"]()
    if legacy:
      dims = (1,) * (4 - array.ndim) + array.shape
      b.num, b.channels, b.height, b.width = dims
    else:
      b.shape.dim.extend(array.shape)
    b.data.extend(array.astype(np.float32).ravel().tolist())
    return b

  def add(name, kind, arrays=(), bottom="", top=""):
    if v1:
      layer = net.layers.add(name=name, type={"Convolution": 4, "ReLU": 18, "Pooling": 17,
                                              "InnerProduct": 14, "Dropout": 6,
                                              "Softmax": 20}[kind])
      if arrays:
        layer.blobs_lr.extend([1.0, 2.0])
    else:
      layer = net.layer.add(name=name, type=kind)
    layer.bottom.append(bottom or "data")
    layer.top.append(top or name)
    for a in arrays:
      layer.blobs.append(blob(a, legacy=v1))

  net.input.append("data")
  net.input_dim.extend([1, 3, 224, 224])
  block = "1"
  for name, arrays in convs.items():
    if name.split("_")[0][4:] != block:
      add(f"pool{block}", "Pooling")
      block = name.split("_")[0][4:]
    add(name, "Convolution", arrays)
    add("relu" + name[4:], "ReLU")
  add(f"pool{block}", "Pooling")
  if fc:
    last = next(reversed(convs.values()))[0].shape[0]
    for name, shape in (("fc6", (8, last * 49)), ("fc7", (8, 8)), ("fc8", (10, 8))):
      add(name, "InnerProduct", (rng.normal(0, 0.1, shape), np.zeros(shape[0])))
      if name != "fc8":
        add("drop" + name[2:], "Dropout")
    add("prob", "Softmax")
  path.write_bytes(net.SerializeToString())


def oihw(params: dict) -> dict:
  return {n: (k.transpose(3, 2, 0, 1).copy(), b) for n, (k, b) in params.items()}


def make_caffe() -> None:
  v1 = oihw(random_vgg(LAYERS["vgg19"], 32, 20))
  write_caffe(OUT / "vgg19_w32_v1.caffemodel", v1, v1=True, fc=True, net_name="VGG_ILSVRC_19")
  np.savez_compressed(OUT / "vgg19_w32_v1_weights.npz",
                      **{f"{n}/{p}": a for n, (k, b) in v1.items()
                         for p, a in (("kernel_oihw", k), ("bias", b))})
  normalised = oihw(random_vgg(LAYERS["vgg19"], 32, 21))
  write_caffe(OUT / "vgg_normalised_w32.caffemodel", normalised, v1=False, fc=False,
              net_name="vgg_normalised")
  np.savez_compressed(OUT / "vgg_normalised_w32_weights.npz",
                      **{f"{n}/{p}": a for n, (k, b) in normalised.items()
                         for p, a in (("kernel_oihw", k), ("bias", b))})
  small = oihw(random_vgg(LAYERS["vgg19"], 64, 22))
  write_caffe(OUT / "vgg16_w64.caffemodel", oihw(random_vgg(LAYERS["vgg16"], 64, 23)), v1=True,
              fc=True, net_name="VGG_ILSVRC_16")
  bad = dict(small)
  k, b = bad["conv3_2"]
  bad["conv3_2"] = (np.zeros((k.shape[0], k.shape[1] + 1, 3, 3)), b)
  write_caffe(OUT / "vgg19_w64_badshape.caffemodel", bad, v1=False, fc=False, net_name="bad")
  write_caffe(OUT / "vgg19_w64_missing.caffemodel",
              {n: a for n, a in small.items() if n != "conv2_2"}, v1=True, fc=False,
              net_name="missing")
  alexnet = {"conv1": (np.zeros((2, 3, 11, 11)), np.zeros(2)),
             "conv2": (np.zeros((4, 2, 5, 5)), np.zeros(4))}
  msgs = caffe_messages()
  net = msgs["NetParameter"](name="AlexNet")
  for name, (k, b) in alexnet.items():
    layer = net.layer.add(name=name, type="Convolution")
    for a in (k, b):
      blob = layer.blobs.add()
      blob.shape.dim.extend(a.shape)
      blob.data.extend(a.ravel().tolist())
  (OUT / "alexnet_w64.caffemodel").write_bytes(net.SerializeToString())


def make_vgg16() -> None:
  """VGG16 in torchvision's layout (with torch's own activations) and in Keras 2's."""
  torch.manual_seed(4)
  net = TorchVGG(LAYERS["vgg16"], 16).eval()
  torch.save(net.state_dict(), OUT / "vgg16_w16.pth")
  save_acts(OUT / "vgg16_w16_torch_acts.npz", fixed_input(), net.taps(fixed_input()))
  write_keras(OUT / "vgg16_w32_notop.h5", random_vgg(LAYERS["vgg16"], 32, 12), top=False)


def write_manifest() -> None:
  sizes = {p.name: p.stat().st_size for p in sorted(OUT.iterdir())
           if p.name != "MANIFEST.json"}
  (OUT / "MANIFEST.json").write_text(json.dumps(
      {"made_by": "tools/make_port_fixtures.py", "torch": torch.__version__,
       "h5py": h5py.__version__, "input_hw": INPUT_HW, "files": sizes}, indent=1) + "\n")
  print(f"{len(sizes)} files, {sum(sizes.values()) / 1e6:.2f} MB in {OUT}")


def main() -> None:
  OUT.mkdir(parents=True, exist_ok=True)
  make_torch()
  make_keras()
  make_caffe()
  make_vgg16()
  write_manifest()


if __name__ == "__main__":
  main()
