"""experiments/cli: every command takes flags only; a positional argument is one line."""

import subprocess
import sys
from pathlib import Path

import pytest

from experiments import cli
from experiments import config_help
from experiments.configs import synthetic


def test_a_positional_argument_is_one_line_and_main_never_runs(monkeypatch, capsys):
  monkeypatch.setattr(cli, "catch_termination", lambda: None)  # leave pytest's signals alone
  monkeypatch.setattr(cli.flags, "FLAGS", {"verbosity": type("Flag", (), {"present": True})})
  ran = []
  with pytest.raises(SystemExit) as e:
    cli.call_main(ran.append, ["prog", "runs/demo"])
  assert e.value.code == 1 and ran == []
  assert capsys.readouterr().err.strip().splitlines() == [
      "error: ValueError: unexpected arguments ['runs/demo']"]
  cli.call_main(ran.append, ["prog"])
  assert ran == [["prog"]]


COMMANDS = sorted(p.stem for p in Path(__file__).resolve().parents[1].glob("experiments/*.py")
                  if p.stem not in ("__init__", "cli", "config_help"))


def test_help_on_every_command_exits_0_and_lists_its_config_fields():
  root = Path(__file__).resolve().parents[1]
  running = {c: subprocess.Popen([sys.executable, "-m", f"experiments.{c}", "--help"], cwd=root,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in COMMANDS}
  for command, proc in running.items():
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (command, err[-500:])
    assert "flags:" in out, command
    if command in ("transform", "evaluate", "sweep", "inpaint", "highres"):  # cli.define_run_flags
      assert "--workdir: Output directory." in out.split("config fields")[0], command
  out = subprocess.run([sys.executable, "-m", "experiments.transform", "--help"], cwd=root,
                       capture_output=True, text=True, timeout=300).stdout
  for field, value in (("deltas", "3.5"), ("k", "100"), ("tv_weight", "0.002"),
                       ("faces", "all"), ("animate", "''")):
    line, = [l for l in out.splitlines() if l.strip().startswith(f"--config.{field}=")]
    assert line.split()[0] == f"--config.{field}={value}"
    assert len(line.split()) > 2, f"{field} has no help line"


def test_every_field_of_the_default_config_has_a_comment_line_above_it():
  fields = synthetic.get_config("demo").keys()
  notes = config_help.field_help(config_help.BASE)
  missing = [f for f in fields if not notes.get(f)]
  assert not missing, f"add a one-line # comment above these fields in synthetic.py: {missing}"
  source = config_help.BASE.read_text().splitlines()
  for f in fields:  # the line directly above, not a trailing comment
    first = next(i for i, l in enumerate(source) if l.strip().startswith(f"c.{f} ="))
    assert source[first - 1].strip().startswith("#"), f


def test_field_help_reads_the_line_directly_above(tmp_path):
  path = tmp_path / "c.py"
  path.write_text("def get_config():\n  c = X()\n  # what a does\n  c.a = 1\n  c.b = 'x # y'  # b\n"
                  "  c.c = 2\n")
  assert config_help.field_help(path) == {"a": "what a does", "b": "b"}


def test_a_config_typo_is_one_clean_line_with_the_suggestion(tmp_path):
  root = Path(__file__).resolve().parents[1]
  done = subprocess.run([sys.executable, "-m", "experiments.transform",
                         f"--workdir={tmp_path / 'w'}", "--config.delta=2"], cwd=root,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [
      "error: --config.delta: no such config field; did you mean --config.deltas? "
      "(--help lists the fields)"]
