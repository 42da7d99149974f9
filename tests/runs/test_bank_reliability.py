"""Reliability, round three (issue 26): never write through a link, verify what a resumed run
kept, pin what can change under a run, never lose a rater's answer, one line for every crash.

Classes 4 and 7 for banks: a generation every shard carries; a bank that disagrees with itself.
"""

import importlib
import json

import numpy as np
import pytest

from tiny_run import fresh_copy, tiny


# --- 4 / 7. banks: a generation every shard carries; a bank that disagrees with itself --------


@pytest.fixture(scope="module")
def tiny_bank_dir(tmp_path_factory):
  import tiny_bank
  path = tmp_path_factory.mktemp("bank") / "bank"
  tiny_bank.build(tiny(), path)
  return path


@pytest.fixture
def bank_copy(tiny_bank_dir, tmp_path):
  return fresh_copy(tiny_bank_dir, tmp_path, "bank")


def test_shards_rebuilt_under_an_open_bank_are_an_error_never_wrong_data(bank_copy):
  import tiny_bank
  from dfi_jax.dfi import bank as bank_lib
  opened = bank_lib.open_bank(bank_copy)
  first = bank_lib.read_rows(opened, [0, 20])
  # Rebuilt as bfloat16 (--overwrite) while a run holds the float32 bank open.
  tiny_bank.build(tiny(), bank_copy, dtype="bfloat16", overwrite=True)
  with pytest.raises(bank_lib.BankError, match=r"00000.phi.npy: uint16 .* gives float32"):
    bank_lib.read_rows(opened, [0])
  # The same settings rebuilt afresh (a new generation): the old handle refuses its shards.
  (bank_copy / "bank.json").unlink()
  tiny_bank.build(tiny(), bank_copy, dtype="bfloat16")
  reopened = bank_lib.open_bank(bank_copy)
  assert np.allclose(bank_lib.read_rows(reopened, [0, 20]), first, atol=0.05)
  renewed = json.loads((bank_copy / "bank.json").read_text())["generation"]
  assert renewed != opened.manifest["generation"]
  stale = opened._replace(manifest=dict(opened.manifest, dtype="bfloat16"))
  with pytest.raises(bank_lib.BankError, match="belongs to another build"):
    bank_lib.read_rows(stale, [0])


def test_a_bank_json_that_disagrees_with_its_shards_is_one_line(bank_copy):
  from dfi_jax.dfi import bank as bank_lib
  manifest = json.loads((bank_copy / "bank.json").read_text())
  (bank_copy / "bank.json").write_text(json.dumps(dict(manifest, shard_size=8, num_shards=5)))
  with pytest.raises(bank_lib.BankError, match=r"00000.json: 16 rows, but bank.json gives this "
                     "shard 8; rerun the build_bank command"):
    bank_lib.open_bank(bank_copy)
  (bank_copy / "bank.json").write_text(json.dumps(dict(manifest, num_images=400)))
  with pytest.raises(bank_lib.BankError, match="bank.json disagrees with itself"):
    bank_lib.open_bank(bank_copy)


def test_a_damaged_shard_names_the_shard_and_the_fix(bank_copy):
  import tiny_bank
  from dfi_jax.dfi import bank as bank_lib
  opened = bank_lib.open_bank(bank_copy)
  phi = bank_copy / "shards" / "00002.phi.npy"
  phi.write_bytes(phi.read_bytes()[:200])
  with pytest.raises(bank_lib.BankError, match="00002.phi.npy: missing or damaged"):
    bank_lib.read_rows(opened, [35])
  shard = bank_copy / "shards" / "00001.attributes.npy"
  shard.write_bytes(shard.read_bytes()[:40])
  with pytest.raises(bank_lib.BankError, match=r"00001.attributes.npy: missing or damaged .*"
                     "rerun the build_bank command that made it"):
    bank_lib.open_bank(bank_copy)
  tiny_bank.build(tiny(), bank_copy)  # the fix named: the same command rebuilds the shards
  bank_lib.read_rows(bank_lib.open_bank(bank_copy), [20, 35])


def test_build_bank_on_a_full_disk_is_one_line_and_keeps_nothing_half_written(
    tmp_path, monkeypatch):
  import errno
  import tiny_bank
  build_lib = importlib.import_module("dfi_jax.dfi.bank.build")
  reserved = []

  def full(fd, offset, length):
    reserved.append(length)
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(build_lib.os, "posix_fallocate", full)
  with pytest.raises(OSError, match=r"cannot reserve \d+ bytes for a shard \(No space left"):
    tiny_bank.build(tiny(), tmp_path / "bank")
  assert reserved and not list((tmp_path / "bank").rglob("*.tmp"))
  assert not list((tmp_path / "bank" / "shards").glob("*.npy"))
