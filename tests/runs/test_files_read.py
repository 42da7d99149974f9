"""Reliability, round three (issue 26): never write through a link, verify what a resumed run
kept, pin what can change under a run, never lose a rater's answer, one line for every crash.

Classes 4 and 6: what a run reads is hashed once, from that very read; judge and weights files
are checked finite and their provenance types named.
"""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dfi_jax.base import run_state
from dfi_jax.base import files as files_lib
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from tiny_run import tiny

ATTRIBUTE = ["smiling"]


# --- 6. judge and weights files checked finite; provenance types named -------------------------


def judge_with(tmp_path, name="judge.npz", nan=False, **changes):
  from dfi_jax.eval import judge as judge_lib
  params, provenance = judge_lib.load()
  if nan:
    first = sorted(params)[0]
    params[first] = dict(params[first])
    kernel = np.array(params[first]["kernel"])
    kernel.flat[0] = np.nan
    params[first]["kernel"] = kernel
  provenance = {k: v for k, v in provenance.items() if k != "format"} | changes
  return judge_lib.save(tmp_path / name, params, provenance)


def test_a_judge_or_weights_file_with_nan_is_one_line_naming_it(tmp_path):
  from dfi_jax.eval import judge as judge_lib
  from dfi_jax.nets import pretrained
  from dfi_jax.nets import weights as weights_lib
  path = judge_with(tmp_path, nan=True)
  with pytest.raises(judge_lib.JudgeError, match=r"judge.npz: parameter .*kernel holds NaN"):
    judge_lib.load(path)
  with pytest.raises(run_state.RunError, match="--config.judge=.*judge.npz: parameter"):
    kit.check_inputs(tiny(judge=str(path)))
  params, provenance = weights_lib.load_weights(pretrained.RANDOM_WEIGHTS)
  params["conv1_1"]["bias"] = np.full_like(params["conv1_1"]["bias"], np.inf)
  weights_lib.save_weights(tmp_path / "w.npz", params, provenance)
  with pytest.raises(weights_lib.WeightsError, match=r"w.npz: parameter conv1_1/bias holds NaN"):
    weights_lib.load_weights(tmp_path / "w.npz")


@pytest.mark.parametrize("changes", [dict(channels="abc"), dict(channels=[8, "x"]),
                                     dict(attributes=5), dict(input_size="64"),
                                     dict(input_size=None)])
def test_judge_provenance_of_the_wrong_type_names_the_file(tmp_path, changes):
  from dfi_jax.eval import judge as judge_lib
  path = judge_with(tmp_path, **changes)
  with pytest.raises(judge_lib.JudgeError, match=r"judge.npz: "):
    judge_lib.load(path)


# --- 4. what a run reads is hashed once, from that very read -----------------------------------


def test_weights_replaced_after_loading_are_not_recorded_as_the_run_s(tmp_path, monkeypatch):
  from dfi_jax.nets import pretrained
  from dfi_jax.nets import weights as weights_lib
  weights = tmp_path / "w.npz"
  shutil.copy(pretrained.RANDOM_WEIGHTS, weights)
  read = run_state.file_sha256(weights)
  params, provenance = weights_lib.load_weights(weights)
  params["conv1_1"]["bias"] = params["conv1_1"]["bias"] + 1.0
  weights_lib.save_weights(tmp_path / "other.npz", params, provenance)
  real = weights_lib.load_weights_pinned

  def then_replaced(path):
    loaded = real(path)
    shutil.copy(tmp_path / "other.npz", path)  # replaced while the bank loads
    return loaded

  monkeypatch.setattr(weights_lib, "load_weights_pinned", then_replaced)
  edit_run.run(tiny(weights=str(weights), num_test=1, deltas=[0.4]), tmp_path / "run",
               attributes=ATTRIBUTE)
  assert json.loads((tmp_path / "run" / "run.json").read_text())["weights_sha256"] == read


def test_an_input_photo_changed_while_the_run_reads_it_is_refused(tmp_path, monkeypatch):
  from dfi_jax.runs import photos as photos_lib
  photo = tmp_path / "me.png"
  Image.new("RGB", (40, 30), "tan").save(photo)
  real = photos_lib.load

  def then_changed(config, inputs):
    loaded = real(config, inputs)
    Image.new("RGB", (40, 30), "navy").save(photo)
    return loaded

  monkeypatch.setattr(photos_lib, "load", then_changed)
  with pytest.raises(run_state.RunError, match="--inputs=.*me.png: the file changed while"):
    edit_run.run(tiny(align="none"), tmp_path / "run", [str(photo)], ATTRIBUTE)
  assert not (tmp_path / "run" / "run.json").exists()


def test_the_weights_cache_is_checked_by_content(tmp_path, monkeypatch):
  from dfi_jax.nets import pretrained
  from dfi_jax.nets import weights as weights_lib
  real_cache = pretrained.imagenet_cache_path()
  if not real_cache.is_file():
    pytest.skip("the converted ImageNet weights are not cached here")
  monkeypatch.setenv("DFI_JAX_CACHE", str(tmp_path / "cache"))
  cached = pretrained.imagenet_cache_path()
  cached.parent.mkdir()
  shutil.copy(pretrained.RANDOM_WEIGHTS, cached)  # valid weights, but other ones
  with pytest.raises(weights_lib.WeightsError, match="holds other weights than the ImageNet"):
    pretrained.load("")
  cached.unlink()
  cached.symlink_to(real_cache)
  params, _, path, sha = pretrained.load("imagenet")
  assert path == cached and sha == run_state.file_sha256(real_cache)


def test_a_dead_converter_s_temp_file_is_removed_from_the_cache(tmp_path, monkeypatch):
  import subprocess
  from dfi_jax.nets import pretrained
  monkeypatch.setenv("DFI_JAX_CACHE", str(tmp_path))
  cached = pretrained.imagenet_cache_path()
  cached.symlink_to(pretrained.RANDOM_WEIGHTS)  # any file: the conversion is not what is tested
  proc = subprocess.Popen(["true"])
  proc.wait()
  host = files_lib._host()  # pylint: disable=protected-access
  dead = tmp_path / f".{cached.name}.0123456789.w{proc.pid}@{host}.tmp"
  live = tmp_path / f".{cached.name}.9876543210.w{os.getpid()}@{host}.tmp"
  for temp in (dead, live):
    temp.write_bytes(b"half a conversion")
  assert pretrained.imagenet_weights() == cached
  assert not dead.exists() and live.exists()
