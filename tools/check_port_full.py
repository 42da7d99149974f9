"""Full-size port check against torch: random VGG19 in torchvision's layout, saved by real torch.

  # one environment with torch and dfi_jax:
  python tools/check_port_full.py
  # or torch in another environment (this one needs only dfi_jax):
  python tools/check_port_full.py --torch_python=/tmp/torchvenv/bin/python

Builds torchvision's VGG19 (features.N + the 25088-4096-4096-1000 classifier, 548 MB like
vgg19-dcbb9e9d.pth) with random weights, saves its state dict with `torch.save` in both the
zip and the legacy container, and records torch's post-ReLU conv3_1/conv4_1/conv5_1 for a
fixed 224x224 input. Then ports both files with dfi_jax.nets.porting, runs dfi_jax's VGG19 with
the recorded preprocessing and pooling, and prints the max relative error per layer
(max |dfi_jax - torch| / max |torch|) and overall. Exit status 1 if it exceeds 1e-5.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TAPS = ("conv3_1", "conv4_1", "conv5_1")
TOL = 1e-5
CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
       512, 512, 512, 512, "M")


def fixed_input(size: int) -> np.ndarray:
  rng = np.random.default_rng(0)
  yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
  base = np.stack([yy, xx, 0.5 + 0.5 * np.sin(9 * yy + 5 * xx)], -1)
  return np.clip(0.7 * base + 0.3 * rng.random((size, size, 3)), 0, 1)[None].astype(np.float32)


def torch_phase(workdir: Path, size: int) -> None:
  """Writes vgg19_full.pth (zip), vgg19_full_legacy.pth and torch_acts.npz to `workdir`."""
  import torch
  from torch import nn

  torch.manual_seed(0)
  layers, in_ch = [], 3
  for v in CFG:
    if v == "M":
      layers.append(nn.MaxPool2d(2, 2))
    else:
      layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=True)]
      in_ch = v
  net = nn.Module()
  net.features = nn.Sequential(*layers)
  net.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                                 nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                 nn.Linear(4096, 1000))
  for m in net.modules():
    if isinstance(m, nn.Conv2d):  # torchvision's init, plus non-zero biases to test them
      nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
      nn.init.normal_(m.bias, 0.0, 0.05)
  net.eval()
  state = net.state_dict()
  torch.save(state, workdir / "vgg19_full.pth")
  torch.save(state, workdir / "vgg19_full_legacy.pth", _use_new_zipfile_serialization=False)

  images = fixed_input(size)
  x = torch.from_numpy(images).permute(0, 3, 1, 2)
  x = (x - torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)) / torch.tensor(
      (0.229, 0.224, 0.225)).view(1, 3, 1, 1)
  relu_index = {"conv3_1": 11, "conv4_1": 20, "conv5_1": 29}  # features.N after the conv
  acts = {}
  with torch.no_grad():
    for i, layer in enumerate(net.features):
      x = layer(x)
      for tap, index in relu_index.items():
        if i == index:
          acts[tap] = x.permute(0, 2, 3, 1).numpy().copy()
      if i == relu_index["conv5_1"]:
        break
  np.savez(workdir / "torch_acts.npz", images=images, **acts)
  print(f"torch {torch.__version__}: wrote {workdir}/vgg19_full.pth "
        f"({(workdir / 'vgg19_full.pth').stat().st_size / 1e6:.0f} MB) and the legacy copy")


def jax_phase(workdir: Path) -> float:
  sys.path.insert(0, str(REPO))
  from dfi_jax.nets import porting
  from dfi_jax.nets import weights as weights_lib

  with np.load(workdir / "torch_acts.npz") as z:
    images, want = z["images"], {t: z[t] for t in TAPS}
  worst = 0.0
  for name in ("vgg19_full.pth", "vgg19_full_legacy.pth"):
    start = time.perf_counter()
    params, prov = porting.port(workdir / name)
    seconds = time.perf_counter() - start
    net = weights_lib.model_for(prov, taps=TAPS)
    got = net.apply({"params": params}, images)
    errors = {t: float(np.max(np.abs(np.asarray(got[t], np.float64) - want[t]))
                       / np.max(np.abs(want[t]))) for t in TAPS}
    worst = max(worst, *errors.values())
    print(f"{name}: ported in {seconds:.1f} s ({prov['source_layout']}, width "
          f"{prov['width']:g}, {prov['preprocessing']}/{prov['pooling']}); max relative "
          "error " + ", ".join(f"{t} {e:.2e}" for t, e in errors.items()))
  print(f"max relative error over both files and all taps: {worst:.2e} (tolerance {TOL:g})")
  return worst


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--torch_python", help="a Python with torch, if this one lacks it")
  parser.add_argument("--workdir", help="where to write the 1.1 GB of checkpoints "
                      "(default: a temporary directory, removed afterwards)")
  parser.add_argument("--size", type=int, default=224, help="input side in pixels")
  parser.add_argument("--phase", choices=("all", "torch"), default="all",
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    workdir = Path(args.workdir or tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.phase == "torch":
      torch_phase(workdir, args.size)
      return
    if args.torch_python:
      subprocess.run([args.torch_python, __file__, "--phase=torch", f"--workdir={workdir}",
                      f"--size={args.size}"], check=True)
    else:
      try:
        import torch  # noqa: F401
      except ImportError:
        sys.exit("check_port_full: torch is not installed here; pip install torch, or pass "
                 "--torch_python=PYTHON_WITH_TORCH")
      torch_phase(workdir, args.size)
    worst = jax_phase(workdir)
  sys.exit(0 if worst <= TOL else 1)


if __name__ == "__main__":
  main()
