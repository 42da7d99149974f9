"""torchvision's VGG state dicts (`features.N` or `convB_C` keys, OIHW) as a `Checkpoint`,
read from a torch checkpoint by `torch_pickle` (without torch, without running code)."""

from __future__ import annotations

import os
import pickle
import re
import struct
import zipfile

from dfi_jax.nets import model as model_lib
from dfi_jax.nets.porting.common import (
    SUPPORTED, VGG_CFGS, Checkpoint, PortError, SourceConv, batch_norm_error,
    checked_architecture, not_vgg_error, torchvision_conv_indices, variant_error)
from dfi_jax.nets.porting.torch_pickle import CorruptCheckpoint, TensorRecord, open_checkpoint


_KEY = re.compile(r"features\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)")
_NAMED_KEY = re.compile(r"(?:.*\.)?(conv\d+_\d+)\.(weight|bias)")
_BATCH_NORM = ("running_mean", "running_var", "num_batches_tracked")


# -- state dict -> VGG convs ---------------------------------------------------------------

def _state_dict(obj, where: str) -> tuple[dict, list[str]]:
  notes = []
  if not isinstance(obj, dict):
    raise PortError(f"{where}: holds a {type(obj).__name__}, expected a state dict (a dict "
                    "of tensors)")
  if not any(isinstance(v, TensorRecord) for v in obj.values()):
    for wrapper in ("state_dict", "model_state_dict", "model", "net"):
      inner = obj.get(wrapper)
      if isinstance(inner, dict) and any(isinstance(v, TensorRecord) for v in inner.values()):
        notes.append(f"state dict taken from the checkpoint's {wrapper!r} entry")
        obj = inner
        break
  tensors = {str(k): v for k, v in obj.items() if isinstance(v, TensorRecord)}
  if tensors and all(k.startswith("module.") for k in tensors):
    tensors = {k[len("module."):]: v for k, v in tensors.items()}
    notes.append("'module.' prefix (DataParallel) removed from the keys")
  if not tensors:
    raise not_vgg_error(where, "tensors", [str(k) for k in obj])
  return tensors, notes


def _conv(where, name, params) -> SourceConv:
  missing = [p for p in ("weight", "bias") if p not in params]
  if missing:
    key = next(iter(params.values()))[0].rsplit(".", 1)[0]
    raise PortError(f"{where}: {key}.{missing[0]} is missing ({name} needs weight and bias)")
  (wkey, weight), (bkey, bias) = params["weight"], params["bias"]
  return SourceConv(wkey, bkey, weight.array(), bias.array())


def _checkpoint(tensors: dict, where: str, notes: list[str]) -> Checkpoint:
  features, named, classifier, other = {}, {}, [], []
  for key, rec in tensors.items():
    if m := _KEY.fullmatch(key):
      features.setdefault(int(m[1]), {})[m[2]] = (key, rec)
    elif m := _NAMED_KEY.fullmatch(key):
      named.setdefault(m[1], {})[m[2]] = (key, rec)
    elif key.startswith("classifier."):
      classifier.append(key)
    else:
      other.append(key)
  conv_indices = sorted(i for i, p in features.items()
                        if "weight" in p and len(p["weight"][1].shape) == 4)
  if not features and not named:
    raise not_vgg_error(where, "features.N.weight or convB_C.weight keys", tensors)
  batch_norm = [k for k in tensors if k.rsplit(".", 1)[-1] in _BATCH_NORM]
  if batch_norm:
    raise batch_norm_error(where, len(conv_indices) or len(named), batch_norm[0])
  ignored = tuple(dict.fromkeys(k.rsplit(".", 1)[0] for k in classifier))
  if ignored:
    notes.append("classifier (fully connected) layers ignored: " + ", ".join(ignored))

  if features:
    for variant, cfg in VGG_CFGS.items():
      if variant not in SUPPORTED and conv_indices == torchvision_conv_indices(cfg):
        raise variant_error(where, variant, len(conv_indices))
    # VGG16 and VGG19 number their convs alike up to conv3_3 (features.14), then apart.
    vgg16_only = (set(torchvision_conv_indices(VGG_CFGS["VGG16"]))
                  - set(torchvision_conv_indices(VGG_CFGS["VGG19"])))
    arch = "vgg16" if vgg16_only & set(features) else "vgg19"
    name_of = dict(zip(torchvision_conv_indices(VGG_CFGS[arch.upper()]),
                       model_lib.conv_names(arch)))
    extra = [p[next(iter(p))][0] for i, p in sorted(features.items()) if i not in name_of]
    extra += other + [p[next(iter(p))][0] for p in named.values()]
    if extra:
      raise PortError(f"{where}: extra layers not in torchvision's {arch.upper()}: "
                      + ", ".join(extra[:6]) + (", ..." if len(extra) > 6 else ""))
    convs = {name_of[i]: _conv(where, name_of[i], features[i]) for i in sorted(features)}
    return Checkpoint("torchvision", "torchvision features.N (OIHW)", "OIHW", convs, ignored,
                      tuple(notes), naming="torchvision", architecture=arch)
  arch = checked_architecture(where, named, other)
  order = sorted(named, key=lambda n: tuple(int(x) for x in n[4:].split("_")))
  convs = {n: _conv(where, n, named[n]) for n in order}
  return Checkpoint("torchvision", "named convB_C keys (OIHW)", "OIHW", convs, ignored,
                    tuple(notes), architecture=arch)


def read_checkpoint(path: str | os.PathLike, where: str | None = None) -> Checkpoint:
  """The VGG16/VGG19 convs of a torch state-dict checkpoint (zip or legacy container)."""
  where = where or str(path)
  try:
    with open_checkpoint(path, where) as obj:
      tensors, notes = _state_dict(obj, where)
      return _checkpoint(tensors, where, notes)
  except PortError:
    raise
  except (CorruptCheckpoint, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile,
          struct.error, ValueError, TypeError, AttributeError, KeyError, IndexError,
          OverflowError, RecursionError, UnicodeDecodeError, OSError) as e:
    raise PortError(f"{where}: corrupt or truncated torch checkpoint "
                    f"({type(e).__name__}: {_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
  text = " ".join(str(e).split())
  return text[:200] + ("..." if len(text) > 200 else "")
