"""A finished tiny run, one per test module that asks for it, and a copy a test may change
(the run-safety tests of tests/runs/test_safety_*.py)."""

import pytest

from dfi_jax.runs import edit as edit_run
from tiny_run import fresh_copy, tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished tiny run: 2 faces × smiling × 2 δ = 4 items."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  edit_run.run(tiny(), workdir, attributes=["smiling"])
  return workdir


@pytest.fixture
def copy_of(finished, tmp_path):
  return fresh_copy(finished, tmp_path, "run")
