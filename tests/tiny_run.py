"""The tiny edit-run config the reliability tests share (batch 4, no probe)."""

from experiments.configs import synthetic


def tiny(**overrides):
  """`synthetic.py:tiny` with batch_size 4, the probe off (its fit compiles anew in every run,
  ~6 s; not what these tests check) and `overrides` set."""
  config = synthetic.get_config("tiny")
  config.batch_size = 4
  config.probe = ""
  with config.unlocked():
    for key, value in overrides.items():
      config[key] = value
  return config


def fresh_copy(folder, tmp_path, name: str):
  """`tmp_path/name`: a copy of a module-wide `folder` (a finished run, a built bank) that one
  test may change."""
  import shutil
  shutil.copytree(folder, tmp_path / name)
  return tmp_path / name
