"""Reliability, round two (issue 18): no run destroys work, every failure is one early line.

Class 1, a run deletes only what it wrote: temp files of other writers, the workdir lock,
signals and interrupts during a write (subprocess tests for signals and two runs at once).
"""

import errno
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dfi_jax.runs import edit as edit_run
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from experiments import cli
from tiny_run import tiny

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTE = ["smiling"]


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
