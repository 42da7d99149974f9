"""The suite mirrors the package (tests/nets/, tests/data/, tests/dfi/, …). This file puts
tests/ itself on sys.path (pytest does so for a conftest.py's folder), so every test imports
the shared helpers here (tiny_bank, vgg_reference, fake_runs) by name."""

import os
import tempfile

import pytest

from dfi_jax.dfi import reconstruct

# The bank cache (dfi_jax/data/bank_cache.py) in a fresh folder per session, never the user's.
os.environ.setdefault("DFI_JAX_BANK_CACHE", tempfile.mkdtemp(prefix="dfi_jax_bank_cache_"))


@pytest.fixture
def calls(monkeypatch):
  """Batch sizes of every reverse map run from here on."""
  seen = []
  original = reconstruct.ReverseMap.__call__

  def counting(self, params, targets, z0, *args, **kwargs):
    seen.append(len(z0))
    return original(self, params, targets, z0, *args, **kwargs)

  monkeypatch.setattr(reconstruct.ReverseMap, "__call__", counting)
  return seen
