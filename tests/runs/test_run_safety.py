"""Reliability, round two (issue 18): no run destroys work, every failure is one early line.

One section per class of failure: files a run did not write, settings checked before the
workdir is claimed, outputs that overwrite each other, tracebacks, inputs that hang or fail late,
an empty --workdir, and state that cannot tell which settings made it. In process on the tiny
config (one compiled solver shared by every run here); two subprocess tests for signals and two
runs at once.
"""

import contextlib
import errno
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import ml_collections
import optax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags
from PIL import Image

from dfi_jax.dfi import bank as bank_lib
from dfi_jax.dfi import decoder as decoder_lib
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from dfi_jax.dfi import features as features_lib
from dfi_jax.runs import highres
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.runs import inpaint
from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from dfi_jax.data import shoes
from dfi_jax.data import sources
from dfi_jax.runs import sweep
from dfi_jax.nets import train
from dfi_jax.nets import weights as weights_lib
from dfi_jax.data.datasets import folder as folder_dataset
from dfi_jax.eval.study import analysis
from dfi_jax.eval.study import stimuli
from fake_runs import fake_run
from experiments import cli
from experiments.configs import decoder as decoder_config
from experiments.configs import features as features_config
from experiments.configs import highres as highres_config
from experiments.configs import inpaint as inpaint_config
from experiments.configs import synthetic
from tiny_run import fresh_copy, tiny

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTE = ["smiling"]




@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished tiny run: 2 faces × smiling × 2 δ = 4 items."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  edit_run.run(tiny(), workdir, attributes=ATTRIBUTE)
  return workdir


@pytest.fixture
def copy_of(finished, tmp_path):
  return fresh_copy(finished, tmp_path, "run")


def fifo(path):
  os.mkfifo(path)
  return path


@contextlib.contextmanager
def no_hang(seconds=60):
  """Fails instead of blocking forever (e.g. on opening a named pipe)."""
  def timeout(*_):
    raise TimeoutError(f"blocked for {seconds} s")
  old = signal.signal(signal.SIGALRM, timeout)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def dead_pid():
  proc = subprocess.Popen(["true"])
  proc.wait()
  return proc.pid


def host():
  return files_lib._host()  # pylint: disable=protected-access


# --- 1. a run deletes only what it wrote -----------------------------------------------------


def test_rerun_keeps_temp_files_it_did_not_write(copy_of):
  user = copy_of / ".notes.tmp"
  live = copy_of / "edits" / f".x.png.abcd1234.w{os.getppid()}@{host()}.tmp"  # a live writer
  other_host = copy_of / f".x.png.abcd1234.w{dead_pid()}@elsewhere.tmp"
  dead = copy_of / "state" / f".y.npz.abcd1234.w{dead_pid()}@{host()}.tmp"
  for p in (user, live, other_host, dead):
    p.write_text("in flight")
  edit_run.run(tiny(), copy_of, attributes=ATTRIBUTE)
  assert user.exists() and live.exists() and other_host.exists()
  assert not dead.exists()  # a killed writer's leftover


def test_atomic_write_temp_names_identify_their_writer(tmp_path, monkeypatch):
  seen = []
  real = os.replace
  monkeypatch.setattr(image_io.os, "replace", lambda a, b: (seen.append(a), real(a, b)))
  files_lib.atomic_write_bytes(tmp_path / ("n" * 250), b"x")  # a long name still fits
  name = Path(seen[0]).name
  assert name.endswith(f".w{os.getpid()}@{host()}.tmp") and len(name) < 255
  assert not files_lib.stale_temp_writer(name)  # this process: alive
  assert files_lib.stale_temp_writer(name.replace(f"w{os.getpid()}@", f"w{dead_pid()}@"))


def test_a_workdir_held_by_a_live_run_is_refused(tmp_path):
  workdir = tmp_path / "busy"
  with workdir_lock.locked(workdir):
    with pytest.raises(run_state.RunError, match=rf"--workdir={workdir} is in use by another "
                       rf"run \(pid {os.getpid()}\)"):
      edit_run.run(tiny(), workdir, attributes=ATTRIBUTE)
  assert sorted(p.name for p in workdir.iterdir()) == [workdir_lock.LOCK]


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
  workdir = tmp_path / "w"
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from dfi_jax.base import workdir_lock\n"
       f"with workdir_lock.locked({str(workdir)!r}):\n  print('held', flush=True); time.sleep(600)"],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(run_state.RunError, match=f"in use by another run \\(pid {holder.pid}\\)"):
      with workdir_lock.locked(workdir):
        pass
  finally:
    holder.kill()
    holder.wait()
  with workdir_lock.locked(workdir) as held:  # kill -9 released it
    assert held == workdir


def test_a_lock_file_removed_on_release_is_made_afresh(tmp_path):
  """`keep=False` unlinks the lock on release; a later holder locks a fresh file."""
  lock = tmp_path / ".out.lock"
  with workdir_lock.hold_lock(lock, "--out", keep=False):
    assert lock.exists()
  assert not lock.exists()
  with workdir_lock.hold_lock(lock, "--out", keep=False):
    with pytest.raises(run_state.RunError, match="in use"):
      with workdir_lock.hold_lock(lock, "--out"):
        pass


def test_a_foreign_non_empty_folder_is_refused(tmp_path):
  (tmp_path / "photos").mkdir()
  (tmp_path / "photos" / "index.html").write_text("mine")
  with pytest.raises(run_state.RunError, match="non-empty folder that holds no dfi_jax run"):
    edit_run.run(tiny(), tmp_path / "photos", attributes=ATTRIBUTE)
  assert [p.name for p in (tmp_path / "photos").iterdir()] == ["index.html"]


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch, capsys):
  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")
  monkeypatch.setattr(workdir_lock.fcntl, "flock", no_locks)
  with workdir_lock.locked(tmp_path / "w") as held:
    assert held == tmp_path / "w"
  assert "cannot lock" in capsys.readouterr().err


def run_cli(module, *args, **kw):
  """The command as a terminal starts it: with SIGINT not ignored, so Python turns Ctrl-C into
  KeyboardInterrupt even when the suite itself runs in the background (a shell without job
  control starts it with SIGINT ignored, and an ignored signal is inherited across exec)."""
  if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
  return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(proc, condition, seconds: float = 300) -> None:
  """Polls `condition` until it holds (or `seconds` pass); fails with `proc`'s stderr if the
  process ends first."""
  deadline = time.time() + seconds
  while time.time() < deadline and not condition():
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(0.05)


def stop_with(proc, sig, ready) -> str:
  """Sends `sig` to `proc` once `ready()` holds; returns its stderr after checking it stopped
  as interrupted (exit 130) without a traceback."""
  try:
    wait_for(proc, ready)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
  finally:
    proc.kill()
  assert proc.returncode == cli.INTERRUPTED and "Traceback" not in err
  return err


def last_line(text):
  return [l for l in text.strip().splitlines() if l.strip()][-1]


def test_two_runs_at_once_then_ctrl_c(tmp_path):
  """A run into the workdir a live `transform` holds is refused (in process: the lock is the
  other process's, the message the one the command prints after `error: RunError: `); then
  Ctrl-C stops the command with one line."""
  workdir = tmp_path / "w"
  first = run_cli("experiments.transform", f"--workdir={workdir}",
                  "--config=experiments/configs/synthetic.py:tiny", "--config.batch_size=4",
                  "--config.iterations=100", "--config.next_iterations=100")
  lock = workdir / workdir_lock.LOCK

  try:
    wait_for(first, lambda: lock.exists() and lock.read_text().strip() == str(first.pid))
    with pytest.raises(run_state.RunError) as e:  # while the first loads and computes
      edit_run.run(tiny(), workdir)
    assert str(e.value) == (f"--workdir={workdir} is in use by another run (pid {first.pid}); "
                            "wait for it to finish or use another path")
    assert issubclass(run_state.RunError, cli.USER_ERRORS)  # the command: one line, exit 1
    err = stop_with(first, signal.SIGINT,
                    lambda: len(list((workdir / "state").glob("*.npz"))) >= 4)
  finally:
    first.kill()
  kept = len(list((workdir / "state").glob("*.npz")))
  assert last_line(err) == (f"interrupted (Ctrl-C): {kept} finished item(s) kept under "
                            f"{workdir}; the same command resumes from them")
  assert kept >= 4 and (workdir / "run.json").exists() and not list(workdir.rglob("*.tmp"))
  with workdir_lock.locked(workdir):  # nothing stuck: the rerun may start
    pass


def test_build_bank_sigterm_is_one_line_saying_what_was_kept(tmp_path):
  bank = tmp_path / "bank"
  proc = run_cli("experiments.build_bank", f"--bank_dir={bank}", "--shard_size=4",
                 "--config=experiments/configs/synthetic.py:tiny", "--config.bank_size=2000")
  err = stop_with(proc, signal.SIGTERM, lambda: list((bank / "shards").glob("*.json")))
  done = len(list((bank / "shards").glob("*.json")))
  assert last_line(err) == (f"interrupted (SIGTERM): {done} finished shard(s) kept in {bank}; "
                            "the same command resumes")
  assert 0 < done < 500 and not list(bank.rglob("*.tmp"))


def test_a_signal_during_a_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
  target = tmp_path / "metrics.json"
  target.write_text("old")

  def interrupted(src, dst):
    raise KeyboardInterrupt("SIGTERM")

  monkeypatch.setattr(image_io.os, "replace", interrupted)
  with pytest.raises(KeyboardInterrupt):
    files_lib.atomic_write_json(target, {"new": 1})
  assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def _interrupt_at_each_instruction(write, code, folder):
  """Runs `write()` once per bytecode instruction of `code`'s frames, raising KeyboardInterrupt
  (what the CLIs turn Ctrl-C and SIGTERM into) just before that instruction, and checks that no
  temp file is ever left behind. Returns how many places were tried."""
  def tracer(frame, event, arg):  # pylint: disable=unused-argument
    if frame.f_code is not code:
      return None
    frame.f_trace_opcodes = True
    return local

  def local(frame, event, arg):  # pylint: disable=unused-argument
    if event == "opcode" and not state["raised"]:
      state["seen"] += 1
      if state["seen"] == state["at"]:
        state["raised"] = True
        raise KeyboardInterrupt("SIGTERM")
    return local

  for at in range(1, 10_000):
    state = dict(at=at, seen=0, raised=False)
    sys.settrace(tracer)
    try:
      write()
    except KeyboardInterrupt:
      pass
    finally:
      sys.settrace(None)
    left = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert not left, f"interrupted at instruction {at}: {left} left behind"
    if not state["raised"]:  # ran to the end untouched: every instruction was tried
      return at
  raise AssertionError("never ran to the end")


@pytest.mark.parametrize("writer", ["atomic_write_json", "bank_shard"])
def test_an_interrupt_at_any_instruction_of_a_write_leaves_no_temp(tmp_path, writer):
  """CI found one: SIGTERM right after `mkstemp` made the file but before the writer's cleanup
  knew its name left `.00002.phi.npy.*.tmp` in a bank (build_bank's SIGTERM test)."""
  if writer == "atomic_write_json":
    code = files_lib.atomic_write_bytes.__code__

    def write():
      files_lib.atomic_write_json(tmp_path / "metrics.json", {"new": 1})
  else:
    bank_build = importlib.import_module("dfi_jax.dfi.bank.build")  # `bank.build` is a function
    code = bank_build._atomic_npy.__wrapped__.__code__

    def write():
      with bank_build._atomic_npy(tmp_path / "00002.phi.npy", np.float32, (2, 3)) as out:
        out[:] = 1
  tried = _interrupt_at_each_instruction(write, code, tmp_path)
  assert tried > 20


# --- 2. every setting and input checked before the workdir is claimed -------------------------


@pytest.mark.parametrize("field, value, words", [(f, v, "") for f, v in [
    ("chunk", 0), ("feature_batch", 0), ("linesearch", "bogus"), ("linesearch_init", "bogus"),
    ("pixel_deltas", (float("nan"),)), ("pixel_delta_photos", float("inf")), ("batch_size", 0),
    ("next_iterations", -1), ("num_test", 0), ("bank_size", 0), ("probe", "cnn"),
    ("pooling", "max"), ("preprocessing", "bgr"), ("align_neighbours", "yes"), ("seed", -1),
    ("deltas", (0.4, 0.4)), ("deltas", (0.4, 0.4000001)), ("attributes", ("smiling",) * 2),
    ("tv_beta", float("nan")), ("iterations", 2.5), ("k", True), ("decoder", 3),
    ("align", "faces"), ("faces", "some"), ("face_threshold", float("nan")), ("animate", "mp4")]
] + [
    ("k", 0, "expected a positive integer"), ("tv_beta", 0.0, "expected β > 0"),
    ("tv_weight", -1.0, "expected λ >= 0"), ("iterations", 0, ""),
    ("image_size", 20, "expected an integer in [32, 1024]")])
def test_bad_setting_fails_before_anything_is_written(tmp_path, field, value, words):
  config = ml_collections.ConfigDict({**tiny().to_dict(), field: value})  # values of any type
  with pytest.raises(run_state.RunError, match=rf"^--config\.{field}=.*: expected ") as e:
    edit_run.run(config, tmp_path / "w", attributes=ATTRIBUTE)
  assert words in str(e.value)
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("config, rules", [
    (synthetic.get_config("tiny"), kit.RULES),
    (inpaint_config.get_config("shoes"), {**kit.RULES, **inpaint.RULES}),
    (highres_config.get_config("tiny"), {**kit.RULES, **highres.RULES}),
    (features_config.get_config("tiny"), train.CONFIG_RULES),
    (decoder_config.get_config("tiny"), decoder_lib.TRAINING_RULES),
], ids=["synthetic", "inpaint", "highres", "features", "decoder"])
def test_every_config_field_has_a_check(config, rules):
  assert sorted(set(config) - set(rules) - {"data"}) == []  # kit.validate checks `data`


def test_failure_after_the_lock_leaves_no_claim_and_no_folder(tmp_path):
  with pytest.raises(ValueError, match="unknown attribute"):
    edit_run.run(tiny(), tmp_path / "new" / "w", attributes=["nosuch"])
  assert list(tmp_path.iterdir()) == []  # the folders it made are gone


def test_corrupt_image_in_an_inpainting_bank_leaves_no_claim(tmp_path):
  folder = tmp_path / "bank"
  shoes.write_folder(folder, 12, seed=1, width=48)
  (folder / "broken.jpg").write_text("not a jpeg")
  config = inpaint_config.get_config("shoes_tiny")
  config.bank_dir, config.procedural_shoes, config.k = str(folder), 0, 3
  with pytest.raises(image_io.ImageError, match="broken.jpg"):
    inpaint.run(config, tmp_path / "w")
  assert not (tmp_path / "w").exists()
  (folder / "broken.jpg").unlink()
  record = inpaint.run(config, tmp_path / "w")  # the corrected rerun is not refused
  assert len(record["per_image"]) == config.num_test


def test_highres_checks_candidates_before_the_workdir(tmp_path):
  config = highres_config.get_config("tiny")
  config.k, config.rerank = 3, 2
  with pytest.raises(run_state.RunError, match="--config.k=3 but only 2 candidates"):
    highres.run(config, tmp_path / "w")
  assert not (tmp_path / "w").exists()


# --- 3. outputs never overwrite each other ---------------------------------------------------


def test_photo_names_are_distinct_and_never_take_a_real_files_name():
  paths = ["a/x.png", "b/x.png", "c/x_2.png", "d/X.jpg", "e/" + "y" * 300 + ".png"]
  names = sources.photo_names(paths)
  assert names == ["x", "x_3", "x_2", "X_4", "y" * sources.MAX_STEM]
  assert len({n.casefold() for n in names}) == len(names)


def test_same_input_twice_is_refused(tmp_path):
  image_io.save_png(tmp_path / "a.png", np.zeros((8, 8, 3)))
  with pytest.raises(run_state.RunError, match="--inputs: .* would write the same file"):
    edit_run.run(tiny(), tmp_path / "w", [str(tmp_path / "a.png"), str(tmp_path / "a.png")])
  assert not (tmp_path / "w").exists()


def test_repeated_attribute_is_refused(tmp_path):
  with pytest.raises(run_state.RunError, match="--attributes: 'smiling' and 'smiling'"):
    edit_run.run(tiny(), tmp_path / "w", attributes=["smiling", "smiling"])
  assert not (tmp_path / "w").exists()


def test_repeated_sweep_value_is_refused(tmp_path):
  with pytest.raises(run_state.RunError, match="--axis: 'k=3' and 'k=3'"):
    sweep.run_sweep(tiny(), tmp_path / "w", ("k", [3, 3]), attributes=ATTRIBUTE)
  assert not (tmp_path / "w").exists()


@pytest.fixture
def study_inputs(tmp_path):
  fake_run(tmp_path / "run", ["face1", "face2"], ["older"], baseline_dir=tmp_path / "pixel")
  return tmp_path


def build(root, **kw):
  return stimuli.build_study([root / "run"], root / "study", baseline_dirs=[root / "pixel"],
                             **kw)


def test_study_stimuli_refuses_to_replace_another_study(study_inputs):
  first = build(study_inputs)
  assert build(study_inputs) == first  # the same study again: allowed, nothing changes
  before = (study_inputs / "study" / "trials.json").read_bytes()
  with pytest.raises(stimuli.StudyError, match=f"holds study {first['study_id']}, not this one"):
    build(study_inputs, seed=1)
  with pytest.raises(stimuli.StudyError, match="holds study"):
    build(study_inputs, min_attention=5)  # same trials, other attention checks
  assert (study_inputs / "study" / "trials.json").read_bytes() == before
  assert build(study_inputs, seed=1, overwrite=True)["study_id"] != first["study_id"]


def test_study_stimuli_refuses_a_folder_holding_something_else(study_inputs):
  (study_inputs / "study").mkdir()
  (study_inputs / "study" / "notes.txt").write_text("mine")
  with pytest.raises(stimuli.StudyError, match="not empty and holds no study"):
    build(study_inputs)
  assert [p.name for p in (study_inputs / "study").iterdir()] == ["notes.txt"]


def test_output_folders_and_files_are_replaced_only_with_overwrite(tmp_path):
  (tmp_path / "analysis").mkdir()
  (tmp_path / "analysis" / "analysis.json").write_text("{}")
  with pytest.raises(ValueError, match="exists and is not empty; pass --overwrite"):
    cli.check_new_folder(tmp_path / "analysis", overwrite=False)
  assert cli.check_new_folder(tmp_path / "analysis", overwrite=True) == tmp_path / "analysis"
  with pytest.raises(ValueError, match="is a directory; expected a file path"):
    cli.check_new_output(tmp_path / "analysis", overwrite=True)


# --- 4. one line, never a traceback -----------------------------------------------------------


def parse(monkeypatch, capsys, *argv):
  """experiments.cli.parse_flags on a fresh flag set: (exit status, stderr lines)."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", "experiments/configs/synthetic.py:tiny",
                                  flag_values=values)
  monkeypatch.setattr(cli.flags, "FLAGS", values)
  with no_hang(), pytest.raises(SystemExit) as e:
    cli.parse_flags(["prog", *argv])
  return e.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("body, message", [
    ("def get_config(arg=None):\n  raise RuntimeError('boom')\n",
     "the config file raised RuntimeError: boom"),
    ("def get_config(arg=None):\n  return None\n",
     "get_config() returned NoneType; expected an ml_collections.ConfigDict"),
    ("def get_config(arg=None):\n  return {'k': 1}\n", "returned dict"),
    ("def get_config(arg=None)\n  return 1\n", "the config file raised SyntaxError"),
], ids=["raises", "none", "dict", "syntax"])
def test_config_file_errors_are_one_line(tmp_path, monkeypatch, capsys, body, message):
  path = tmp_path / "my_config.py"
  path.write_text(body)
  status, lines = parse(monkeypatch, capsys, f"--config={path}")
  assert status == 1 and len(lines) == 1, lines
  assert lines[0].startswith(f"error: --config={path}: ") and message in lines[0]


def weights_with(tmp_path, name="w.npz", **changes):
  """A one-layer weights file (small: fast to write) with these provenance changes."""
  params = weights_lib.init_random(0, 0.25, "conv1_1")
  prov = weights_lib.provenance_for("random", "test", "test", params, width=0.25)
  arrays = {f"{l}/{n}": v for l, p in params.items() for n, v in p.items()}
  meta = changes.pop("meta", None) or dict(prov, **changes)
  return weights_lib.write_npz(tmp_path / name, arrays, meta)


@pytest.mark.parametrize("changes, message", [
    (dict(meta=[1, 2]), "provenance record is a JSON list"),
    (dict(layers=[]), "malformed provenance layers=[]"),
    (dict(width="abc"), "malformed provenance width='abc'"),
    (dict(width=None), "malformed provenance width=None"),
    (dict(pooling="max"), "malformed provenance pooling='max'"),
    (dict(preprocessing=7), "malformed provenance preprocessing=7"),
])
def test_malformed_weights_provenance_is_one_line(tmp_path, changes, message):
  weights_lib.load_weights(weights_with(tmp_path, "good.npz"))  # unchanged, it loads
  path = weights_with(tmp_path, **changes)
  with pytest.raises(weights_lib.WeightsError) as e:
    edit_run.run(tiny(weights=str(path)), tmp_path / "w", attributes=ATTRIBUTE)
  assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
  assert not (tmp_path / "w").exists()


def test_damaged_state_files_are_named_and_recomputed(copy_of, calls, capsys):
  items = sorted((copy_of / "state").glob("*.npz"))
  items[0].write_bytes(b"not a zip")
  np.savez(items[-1], image=np.zeros(3))  # a readable archive with the wrong content
  again = edit_run.run(tiny(), copy_of, attributes=ATTRIBUTE)
  err = capsys.readouterr().err
  for damaged in (items[0], items[-1]):
    assert f"warning: {damaged} is damaged" in err and "recomputing it" in err
  assert calls == [2, 2]  # the first δ's batch and the second's: both held a damaged item
  assert not again["failures"]
  for item in items:
    assert run_state.read_state_file(item, {"image": (32, 32, 3)}) is not None


def test_damaged_run_json_does_not_block_the_rerun(copy_of, calls, capsys):
  (copy_of / "run.json").write_text("{ truncated")
  edit_run.run(tiny(), copy_of, attributes=ATTRIBUTE)
  assert "run.json is damaged" in capsys.readouterr().err
  assert calls == []  # every item was made with these settings: reused
  assert json.loads((copy_of / "run.json").read_text())["settings"]["k"] == 5


def test_oversized_csv_field_is_one_line(tmp_path):
  path = tmp_path / "answers.csv"
  path.write_text("study_id,rater,trial_id,choice\nabc,r1,m00000," + "x" * 200_000 + "\n")
  with pytest.raises(analysis.AnalysisError, match=f"^{path}: not a response CSV .*field "
                     "larger than field limit"):
    analysis.read_responses(path)


def test_damaged_bank_manifest_is_named(tmp_path):
  (tmp_path / bank_lib.MANIFEST).write_text("{ truncated")
  stream = bank_lib.synthetic_stream(4, 32, first_seed=5)
  spec = features_lib.FeatureSpec(("conv1_1",), ((32, 32, 4),))
  with pytest.raises(bank_lib.BankError, match="bank.json is damaged .*--overwrite"):
    bank_lib.build(tmp_path, stream, None, None, spec)


def test_a_damaged_training_checkpoint_is_named_and_training_starts_afresh(tmp_path, capsys):
  fspec = features_lib.FeatureSpec(("conv2_1",), ((16, 16, 8),))
  spec = decoder_lib.spec_for(fspec, 32, 4)
  optimizer = optax.adam(1e-3)
  fresh = decoder_lib.init_train_state(decoder_lib.init(jax.random.key(0), spec), optimizer)
  path = tmp_path / "d.resume.npz"
  decoder_lib.save_train_state(path, fresh._replace(step=fresh.step + 5), {"steps": 6})
  assert int(decoder_lib.load_train_state(path, fresh, {"steps": 6}).step) == 5
  with pytest.raises(ValueError, match="holds a run with other settings"):
    decoder_lib.load_train_state(path, fresh, {"steps": 7})
  path.write_bytes(path.read_bytes()[:100])  # cut short (e.g. copied onto a full disk)
  assert decoder_lib.load_train_state(path, fresh, {"steps": 6}) is None
  assert f"warning: {path} is damaged" in capsys.readouterr().err

# --- 5. inputs that would hang or fail late ---------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "symlink to a fifo", "device"])
def test_an_input_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
  path = {"fifo": lambda: fifo(tmp_path / "photo.png"),
          "symlink to a fifo": lambda: os.symlink(fifo(tmp_path / "p"), tmp_path / "l.png")
          or tmp_path / "l.png",
          "device": lambda: Path("/dev/zero")}[kind]()
  with no_hang(), pytest.raises(files_lib.InputError, match=rf"^--inputs={path}: is a (named "
                                r"pipe|character device); expected a regular file"):
    edit_run.run(tiny(), tmp_path / "w", [str(path)], ATTRIBUTE)
  assert not (tmp_path / "w").exists()


def test_named_pipes_anywhere_are_refused(tmp_path, monkeypatch, capsys):
  pipe = fifo(tmp_path / "pipe.npz")
  with no_hang(), pytest.raises(files_lib.InputError, match="--config.weights=.*named pipe"):
    edit_run.run(tiny(weights=str(pipe)), tmp_path / "w", attributes=ATTRIBUTE)
  with no_hang(), pytest.raises(files_lib.InputError, match="named pipe"):
    analysis.response_files([fifo(tmp_path / "answers.csv")])
  with no_hang(), pytest.raises(files_lib.InputError, match="--config.csv=.*named pipe"):
    folder_dataset.read_table(fifo(tmp_path / "attributes.csv"))
  run = fake_run(tmp_path / "run", ["face1"], ["older"])
  (run / "metrics.json").unlink()
  fifo(run / "metrics.json")
  with no_hang(), pytest.raises(files_lib.InputError, match="metrics.json: is a named pipe"):
    stimuli.dfi_stimuli(run, "run")
  status, lines = parse(monkeypatch, capsys, f"--config={fifo(tmp_path / 'c.py')}")
  assert status == 1 and lines == [f"error: --config={tmp_path / 'c.py'}: is a named pipe; "
                                   "expected a regular file"]
  folder = tmp_path / "bank"
  shoes.write_folder(folder, 6, seed=1, width=48)
  fifo(folder / "zz.jpg")
  config = inpaint_config.get_config("shoes_tiny")
  config.bank_dir, config.procedural_shoes, config.k = str(folder), 0, 2
  with no_hang(), pytest.raises(files_lib.InputError, match="zz.jpg: is a named pipe"):
    inpaint.run(config, tmp_path / "inpaint")
  with no_hang(), pytest.raises(image_io.ImageError, match="is a named pipe"):
    image_io.load_image(fifo(tmp_path / "x.png"))


def non_utf8(folder: Path, stem: bytes = b"caf\xe9") -> Path:
  path = os.fsdecode(bytes(folder) + b"/" + stem + b".png")
  image_io.save_png(path, np.zeros((8, 8, 3)))
  return Path(path)


def test_non_utf8_names_are_refused_before_the_work(tmp_path):
  path = non_utf8(tmp_path)
  with pytest.raises(files_lib.InputError, match=r"the name .*caf\\xe9.png' is not valid UTF-8"):
    edit_run.run(tiny(), tmp_path / "w", [str(path)], ATTRIBUTE)
  assert not (tmp_path / "w").exists()
  with pytest.raises(run_state.RunError, match="--workdir: the name .* is not valid UTF-8"):
    edit_run.run(tiny(), os.fsdecode(bytes(tmp_path) + b"/w\xff"), attributes=ATTRIBUTE)
  folder = tmp_path / "bank"
  shoes.write_folder(folder, 6, seed=1, width=48)
  non_utf8(folder, b"\xff")
  config = inpaint_config.get_config("shoes_tiny")
  config.bank_dir, config.procedural_shoes, config.k = str(folder), 0, 2
  with pytest.raises(files_lib.InputError, match="is not valid UTF-8"):
    inpaint.run(config, tmp_path / "inpaint")
  baselines = tmp_path / "baselines"
  baselines.mkdir()
  non_utf8(baselines, b"face1__\xe9")
  with pytest.raises(files_lib.InputError, match="is not valid UTF-8"):
    stimuli.folder_baselines(baselines, "pixel")


# --- 6. an empty path never means "here" -----------------------------------------------------


def test_empty_output_paths_are_refused(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  for call in (lambda: edit_run.run(tiny(), "", attributes=ATTRIBUTE),
               lambda: inpaint.run(inpaint_config.get_config("tiny"), ""),
               lambda: highres.run(highres_config.get_config("tiny"), ""),
               lambda: sweep.run_sweep(tiny(), "", ("k", [3])),
               lambda: workdir_lock.locked("", "bank_dir").__enter__()):
    with pytest.raises(run_state.RunError, match=r"^--\w+ is empty; expected a path"):
      call()
  with pytest.raises(ValueError, match="--out is empty"):
    cli.check_new_output("", overwrite=True)
  with pytest.raises(ValueError, match="--out_dir is empty"):
    stimuli.build_study(["run"], "")
  assert list(tmp_path.iterdir()) == []


# --- 7. state knows which settings made it ----------------------------------------------------


def test_state_is_reused_only_under_the_settings_that_made_it(copy_of, calls):
  (copy_of / "run.json").unlink()
  edit_run.run(tiny(), copy_of, attributes=ATTRIBUTE)
  assert calls == []  # same settings, run.json gone: every item reused
  (copy_of / "run.json").unlink()
  record = edit_run.run(tiny(k=4), copy_of, attributes=ATTRIBUTE)
  assert calls == [2, 2]  # other settings: nothing reused
  assert record["settings"]["k"] == 4
  claimed = json.loads((copy_of / "run.json").read_text())
  assert claimed["settings"]["k"] == 4
  fingerprint = run_state.claim(copy_of, claimed).fingerprint
  for item in (copy_of / "state").glob("*.npz"):
    with np.load(item) as npz:
      assert str(npz["fingerprint"]) == fingerprint


def test_edit_pngs_follow_their_state(copy_of, calls):
  """An edit PNG left by other settings (no state for it) is replaced, not kept."""
  state = sorted((copy_of / "state").glob("*.npz"))[0]
  png = copy_of / "edits" / (state.stem + ".png")
  state.unlink()
  png.write_bytes(b"stale")
  edit_run.run(tiny(), copy_of, attributes=ATTRIBUTE)
  assert calls == [2] and Image.open(png).size == (32, 32)


# --- disk full while state is written ---------------------------------------------------------


def test_disk_full_during_state_writes_then_rerun_completes(tmp_path, monkeypatch, calls):
  real, writes = files_lib.atomic_write_bytes, []

  def full_at_the_second_state_item(path, data):
    if Path(path).parent.name == run_state.STATE_DIR:
      writes.append(path)
      if len(writes) == 2:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(path, data)

  monkeypatch.setattr(run_state.files_lib, "atomic_write_bytes", full_at_the_second_state_item)
  with pytest.raises(OSError, match="No space left"):
    edit_run.run(tiny(), tmp_path / "w", attributes=ATTRIBUTE)
  assert len(list((tmp_path / "w" / "state").glob("*.npz"))) == 1
  assert (tmp_path / "w" / "run.json").exists() and not list((tmp_path / "w").rglob("*.tmp"))
  monkeypatch.setattr(run_state.files_lib, "atomic_write_bytes", real)
  record = edit_run.run(tiny(), tmp_path / "w", attributes=ATTRIBUTE)
  assert calls == [2, 2, 2] and len(record["outputs"]["edits"]) == 4


