"""Bounded property-based passes over config validation and flag parsing: clean errors only."""

import string

import pytest
from absl import flags
from hypothesis import given, settings, strategies as st
import ml_collections
from ml_collections import config_flags

from dfi_jax import edit_run
from experiments.configs import synthetic

FIELDS = {
    "k": st.one_of(st.integers(-5, 500), st.floats(allow_nan=True)),
    "deltas": st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                 st.integers(-3, 3), st.text(max_size=3)), max_size=3),
    "tv_weight": st.floats(allow_nan=True, allow_infinity=True),
    "tv_beta": st.floats(allow_nan=True, allow_infinity=True),
    "iterations": st.integers(-3, 1000),
    "image_size": st.integers(-10, 2000),
    "taps": st.lists(st.sampled_from(["conv1_1", "conv3_1", "conv5_1", "relu3_1", ""]), max_size=3),
    "scaling": st.sampled_from(["mean_square", "none", "unit", "l2", ""]),
    "neighbours": st.sampled_from(["attributes", "features", "knn"]),
    "solver": st.sampled_from(["jaxopt_lbfgsb", "optax_lbfgs", "adam"]),
    "data": st.sampled_from(["synthetic", "imagenet"]),
}


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: FIELDS[k] for k in keys})))
def test_validate_accepts_or_names_the_field(overrides):
  values = synthetic.get_config("tiny").to_dict()
  values.update({k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
  config = ml_collections.ConfigDict(values)  # a fresh dict: values of any type
  try:
    edit_run.validate(config)
  except edit_run.RunError as e:
    message = str(e)
    assert message.startswith("--config.") and "expected" in message and "\n" not in message


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["k", "deltas", "tv_weight", "image_size", "taps", "nosuchfield"]),
       st.text(alphabet=string.printable, max_size=12))
def test_config_overrides_parse_or_fail_cleanly(field, value):
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", "experiments/configs/synthetic.py:tiny",
                                  flag_values=fv)
  try:
    fv(["prog", f"--config.{field}={value}"])
    config = fv.config
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError):
    return  # experiments.cli turns each of these into one line on stderr
  try:
    edit_run.validate(config)
  except edit_run.RunError:
    pass
