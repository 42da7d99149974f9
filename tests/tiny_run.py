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
