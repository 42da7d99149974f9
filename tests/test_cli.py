"""experiments/cli: every command takes flags only; a positional argument is one line."""

import pytest

from experiments import cli


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
