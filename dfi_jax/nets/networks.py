"""The feature networks φ can use: one table entry per architecture (`NETWORKS`).

The contract φ relies on (`dfi.features.make_phi`, `dfi.reconstruct`):

* a network is a Flax module with attributes `taps` (the tap names, in φ's order) and
  `architecture` (its key in `NETWORKS`);
* `module.apply(variables, images)` takes `[B, H, W, 3]` float32 RGB in `[0, 1]` (any input
  preprocessing, e.g. ImageNet normalisation, happens inside the module) and returns
  `{tap: [B, h, w, c]}` float32 for every tap; `variables` is `{"params": params}`, plus
  `{"backward": entry.backward_kernels(params)}` when the entry has them and the reverse map's
  `fast_backward` is on;
* every tap keeps at least one spatial position at `entry.min_image_size(taps, pooling)`.

Adding a network (a ResNet, a toy in a test): its module, and one entry in `NETWORKS`:
`build(provenance, taps, pooling, preprocessing) -> module`, the `taps` it offers,
`min_image_size`, and `backward_kernels(params, winograd)` (None: XLA's own input gradients).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import jax

from dfi_jax.nets import model as model_lib


class Network(NamedTuple):
  """One architecture φ can be computed with (see the module docstring's contract)."""
  build: Callable[..., object]  # (provenance, taps, pooling, preprocessing) -> Flax module
  taps: tuple[str, ...]  # the tap names it offers
  min_image_size: Callable[[Sequence[str], str], int]  # (taps, pooling) -> smallest side
  # (params, winograd: bool) -> the "backward" collection
  backward_kernels: Callable[..., dict] | None = None


def _vgg(architecture: str, provenance: dict, taps: Sequence[str], pooling: str,
         preprocessing: str):
  return model_lib.VGG(taps=tuple(taps), width=float(provenance["width"]),
                       architecture=architecture, pooling=pooling, preprocessing=preprocessing)


NETWORKS: dict[str, Network] = {
    name: Network(functools.partial(_vgg, name), model_lib.conv_names(name),
                  model_lib.min_image_size, model_lib.backward_kernels)
    for name in model_lib.ARCHITECTURES}


def network_for(architecture: str) -> Network:
  """The table entry of `architecture`; ValueError naming the known ones otherwise."""
  if architecture not in NETWORKS:
    raise ValueError(f"unknown network architecture {architecture!r}; expected one of "
                     f"{sorted(NETWORKS)}")
  return NETWORKS[architecture]


WINOGRAD = ("auto", "on", "off")  # the reverse map's `winograd` setting


def use_winograd(mode: str) -> bool:
  """Whether `mode` (one of `WINOGRAD`) runs the wide convolutions as Winograd: "auto" on the
  CPU backend only (GPU convolution libraries choose their own algorithms)."""
  if mode not in WINOGRAD:
    raise ValueError(f"winograd must be one of {WINOGRAD}, got {mode!r}")
  return mode == "on" or (mode == "auto" and jax.default_backend() == "cpu")


def backward_variables(net, params: dict, winograd: str = "off") -> dict:
  """`{"backward": …}` for `net`'s fast input gradients (its wide layers as Winograd
  convolutions where `use_winograd(winograd)`), or {} when its entry has none."""
  entry = NETWORKS.get(getattr(net, "architecture", ""))
  if entry is None or entry.backward_kernels is None:
    return {}
  return {"backward": entry.backward_kernels(params, winograd=use_winograd(winograd))}
