"""Bounded property-based passes over config validation and flag parsing.

Each generated value is judged by `verdict`, a plain statement of what each field accepts
(written from the fields' documentation, not from `validate`): a value it calls invalid must be
rejected with a one-line message naming that field, and a config it calls valid must be accepted.
"""

import math
import string

import pytest
from absl import flags
from hypothesis import example, given, settings, strategies as st
import ml_collections
from ml_collections import config_flags

from dfi_jax.runs import kit
from dfi_jax.base import run_state
from experiments.configs import synthetic

CONV_NAMES = {f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
              for i in range(1, n + 1)}
CHOICES = {"scaling": {"mean_square", "none", "unit"}, "neighbours": {"attributes", "features"},
           "solver": {"jaxopt_lbfgsb", "optax_lbfgs"},
           "data": {"synthetic", "lfw", "celeb_a", "folder"}}
OPEN = None  # the documentation does not say (e.g. λ = ∞, δ = True): either answer will do

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


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def verdict(field: str, value):
  """True: `value` is valid for `field`; False: it must be rejected; OPEN: not specified."""
  if field in ("k", "iterations"):  # positive integers
    return _number(value) and isinstance(value, int) and value > 0
  if field == "image_size":
    return isinstance(value, int) and 32 <= value <= 1024
  if field == "deltas":  # a non-empty list of finite numbers, each given once (one file each)
    if any(isinstance(d, bool) for d in value):
      return OPEN
    finite = len(value) > 0 and all(_number(d) and math.isfinite(d) for d in value)
    return finite and len({f"{d:g}" for d in value}) == len(value)
  if field in ("tv_weight", "tv_beta"):  # λ >= 0, β > 0
    if not _number(value) or math.isnan(value):
      return False
    if math.isinf(value) and value > 0:
      return OPEN
    return value >= 0 if field == "tv_weight" else value > 0
  if field == "taps":  # distinct conv names; "a,b" in one string (as a flag gives them) is two
    names = [p.strip() if isinstance(p, str) else p
             for v in value for p in (v.split(",") if isinstance(v, str) else [v])]
    return (len(names) > 0 and all(n in CONV_NAMES for n in names)
            and len(set(names)) == len(names))
  return value in CHOICES[field]


def check(config, judged: dict) -> None:
  """`validate` rejects a config with an invalid field naming one such field, else accepts."""
  invalid = {f for f, ok in judged.items() if ok is False}
  either = {f for f, ok in judged.items() if ok is OPEN}
  try:
    kit.validate(config)
  except kit.RunError as e:
    message = str(e)
    assert "\n" not in message and "expected" in message, message
    named = message.split("=")[0].removeprefix("--config.")
    assert named in invalid | either, (message, judged)
    return
  assert not invalid, f"accepted invalid {sorted(invalid)}: {judged}"


@settings(max_examples=150, deadline=None)
@example({"tv_weight": math.nan})
@example({"tv_beta": math.nan})
@example({"k": 1, "image_size": 32, "iterations": 1, "tv_weight": 0.0})  # edges, all valid
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: FIELDS[k] for k in keys})))
def test_validate_rejects_invalid_fields_by_name_and_accepts_valid_ones(overrides):
  values = synthetic.get_config("tiny").to_dict()
  values.update({k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
  config = ml_collections.ConfigDict(values)  # a fresh dict: values of any type
  check(config, {k: verdict(k, values[k]) for k in overrides})


@pytest.mark.parametrize("field,bad,good", [
    ("k", 0, 7), ("deltas", (), (0.5, -2)), ("deltas", (1.0, float("inf")), (3,)),
    ("tv_weight", -1e-9, 0.0), ("tv_beta", 0.0, 1.5), ("iterations", 0, 1),
    ("image_size", 31, 1024), ("image_size", 1025, 32), ("taps", ("conv3_1", "pool3"),
                                                         ("conv3_1", "conv5_4")),
    ("taps", (), ("conv1_1",)), ("scaling", "l2", "unit"), ("neighbours", "knn", "features"),
    ("solver", "adam", "optax_lbfgs"), ("data", "imagenet", "synthetic"),
])
def test_each_field_rejects_its_invalid_value_and_accepts_a_valid_one(field, bad, good):
  for value, ok in ((bad, False), (good, True)):
    assert verdict(field, value) is ok  # the reference agrees with the example
    config = synthetic.get_config("tiny")
    config[field] = value
    check(config, {field: ok})


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["k", "deltas", "tv_weight", "image_size", "taps", "nosuchfield"]),
       st.one_of(st.text(alphabet=string.printable, max_size=12),
                 st.integers(-5, 2000).map(str), st.floats().map(repr),
                 st.lists(st.floats(-5, 5).map(repr), min_size=1, max_size=3).map(",".join),
                 st.lists(st.sampled_from(sorted(CONV_NAMES) + ["relu3_1", "x"]), min_size=1,
                          max_size=3).map(",".join)))
@example("taps", "conv1_1,conv3_1")  # two names in one flag, as the README shows
@example("taps", "conv1_1, pool3")
@example("deltas", "0.5,-1")
@example("tv_weight", "nan")
@example("nosuchfield", "1")
def test_config_overrides_parse_or_fail_cleanly(field, value):
  argv = ["prog", f"--config.{field}={value}"]
  fv = flags.FlagValues()
  try:
    # sys_argv: the override flags are made from it (without it every override is "unknown").
    config_flags.DEFINE_config_file("config", "experiments/configs/synthetic.py:tiny",
                                    flag_values=fv, sys_argv=argv)
    fv(argv)
    config = fv.config
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError):
    return  # experiments.cli turns each of these into one line on stderr
  assert field != "nosuchfield", "an unknown field was accepted"
  check(config, {field: verdict(field, config[field])})


def test_validate_reads_the_config_without_changing_it():
  """`validate` checks "a,b" lists split, but leaves the caller's config as it was; the run
  uses the split copy `run_state.split_lists` returns."""
  config = synthetic.get_config("tiny")
  config.taps = ("conv1_1,conv3_1",)
  before = config.to_dict()
  kit.validate(config)
  assert config.to_dict() == before
  split = run_state.split_lists(config)
  assert split.taps == ("conv1_1", "conv3_1") and config.taps == ("conv1_1,conv3_1",)
  assert run_state.split_lists(split) is split  # nothing left to split: no copy
