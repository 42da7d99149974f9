"""Reliability, round two (issue 18): no run destroys work, every failure is one early line.

Classes 4 and 5: one line, never a traceback; inputs that would hang or fail late are refused
at once.
"""

import contextlib
import json
import os
import signal
from pathlib import Path

import jax
import optax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from dfi_jax.dfi import bank as bank_lib
from dfi_jax.dfi import decoder as decoder_lib
from dfi_jax.runs import edit as edit_run
from dfi_jax.dfi import features as features_lib
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.runs import inpaint
from dfi_jax.base import run_state
from dfi_jax.data import shoes
from dfi_jax.nets import weights as weights_lib
from dfi_jax.data.datasets import folder as folder_dataset
from dfi_jax.eval.study import analysis
from dfi_jax.eval.study import stimuli
from fake_runs import fake_run
from experiments import cli
from experiments.configs import inpaint as inpaint_config
from tiny_run import tiny

ATTRIBUTE = ["smiling"]


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
