"""The on-disk bank cache (dfi_jax/data/bank_cache.py): keyed, verified, atomic, shared."""

import multiprocessing
import os

import numpy as np
import pytest

from dfi_jax.data import bank_cache
from dfi_jax.data import banks
from dfi_jax.data import sources
from experiments.configs import synthetic


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv(bank_cache.OFF_ENV, str(tmp_path / "cache"))
  return tmp_path / "cache"


def test_cached_computes_once_then_reads(cache):
  calls = []

  def compute():
    calls.append(1)
    return dict(x=np.arange(5.0))

  a = bank_cache.cached("thing", compute, size=3)
  b = bank_cache.cached("thing", compute, size=3)
  np.testing.assert_array_equal(a["x"], b["x"])
  assert len(calls) == 1
  bank_cache.cached("thing", compute, size=4)  # another key: computed again
  assert len(calls) == 2
  assert len(list(cache.glob("thing-*.npz"))) == 2


def test_a_damaged_file_is_named_and_recomputed(cache, capfd):
  compute = lambda: dict(x=np.arange(1000.0))  # noqa: E731
  bank_cache.cached("thing", compute, size=3)
  path, = cache.glob("thing-*.npz")
  for damage in (lambda b: b[:len(b) // 2], lambda b: b[:-200] + bytes(200)):
    path.write_bytes(damage(path.read_bytes()))
    capfd.readouterr()
    again = bank_cache.cached("thing", compute, size=3)
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err and str(path) in err
    np.testing.assert_array_equal(again["x"], np.arange(1000.0))
    assert bank_cache.read(path) is not None  # rewritten whole


def test_a_changed_value_with_a_valid_zip_is_caught(cache, capfd):
  path = cache / "x.npz"
  bank_cache.write(path, dict(x=np.arange(4.0)))
  with np.load(path) as z:
    arrays = dict(z)
  arrays["x"] = arrays["x"] + 1  # a valid file whose checksum no longer matches
  np.savez(path, **arrays)
  assert bank_cache.read(path) is None
  assert "checksum" in capfd.readouterr().err


def test_the_key_changes_with_every_part():
  base = dict(weights="a", taps=["conv3_1"], image_size=64, bank_seed=0, bank_size=10)
  keys = {bank_cache.key(**base)}
  for field, value in dict(weights="b", taps=["conv4_1"], image_size=32, bank_seed=1,
                           bank_size=11).items():
    keys.add(bank_cache.key(**dict(base, **{field: value})))
  assert len(keys) == 6


def test_off_computes_every_time(monkeypatch, tmp_path):
  monkeypatch.setenv(bank_cache.OFF_ENV, "0")
  monkeypatch.setattr(bank_cache, "cache_root", lambda: pytest.fail("touched the cache"))
  calls = []
  for _ in range(2):
    bank_cache.cached("thing", lambda: calls.append(1) or dict(x=np.zeros(1)), size=1)
  assert len(calls) == 2


def _phi(images):
  return images.reshape(len(images), -1)[:, :7] * 2.0


def test_phi_rows_computes_each_row_once_and_later_runs_read_it(cache):
  images = np.random.default_rng(0).random((20, 4, 4, 3)).astype(np.float32)
  first = bank_cache.PhiRows(images, _phi, 7, lambda r: r + 100, cache / "phi")
  np.testing.assert_allclose(first([3, 1, 3]), _phi(images[[3, 1, 3]]))
  first([1, 5])
  assert first.computed == 3  # 3, 1, then 5
  later = bank_cache.PhiRows(images, _phi, 7, lambda r: r + 100, cache / "phi")
  np.testing.assert_allclose(later([5, 3, 1]), _phi(images[[5, 3, 1]]))
  assert later.computed == 0
  later([0])
  assert later.computed == 1


def test_a_damaged_phi_file_is_recomputed(cache, capfd):
  images = np.random.default_rng(0).random((20, 4, 4, 3)).astype(np.float32)
  bank_cache.PhiRows(images, _phi, 7, folder=cache / "phi")([2, 4])
  path, = (cache / "phi").glob("phi-*.npz")
  data = bytearray(path.read_bytes())
  data[-300:-200] = bytes(100)
  path.write_bytes(bytes(data))
  later = bank_cache.PhiRows(images, _phi, 7, folder=cache / "phi")
  np.testing.assert_allclose(later([2, 4]), _phi(images[[2, 4]]))
  assert later.computed == 2 and "damaged" in capfd.readouterr().err


def _write_many(root, n):
  os.environ[bank_cache.OFF_ENV] = root
  for _ in range(n):
    bank_cache.write(bank_cache.cache_root() / "same.npz", dict(x=np.arange(200_000.0)))


def test_two_writers_at_once_leave_one_whole_file(cache):
  context = multiprocessing.get_context("spawn")
  workers = [context.Process(target=_write_many, args=(str(cache), 20)) for _ in range(2)]
  for w in workers:
    w.start()
  for w in workers:
    w.join(60)
    assert w.exitcode == 0
  np.testing.assert_array_equal(bank_cache.read(cache / "same.npz")["x"], np.arange(200_000.0))
  assert [p.name for p in cache.iterdir()] == ["same.npz"]  # no temp file left


def test_the_generated_bank_reads_its_labels_from_the_cache(cache, monkeypatch):
  config = synthetic.get_config("tiny")
  bank = banks.load_bank(config)
  from dfi_jax.data import faces  # pylint: disable=import-outside-toplevel
  images, attributes = faces.generate(range(config.bank_size), config.image_size)
  np.testing.assert_array_equal(bank.attributes, attributes)
  np.testing.assert_array_equal(bank.images[[3, 7]], images[[3, 7]])
  monkeypatch.setattr(faces, "sample_face", lambda s: pytest.fail("drew the labels again"))
  np.testing.assert_array_equal(sources.synthetic_labels(config)["attributes"], attributes)


def test_the_compilation_cache_keeps_even_small_programs(tmp_path):
  """An editor's warm edit compiles ~90 small programs (masks, φ, the judge; ~5 s on 2 cores):
  every compiled program goes to the cache, not only those that took a second to compile."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  code = ("from dfi_jax.data import bank_cache; bank_cache.use_compilation_cache()\n"
          "import jax, jax.numpy as jnp\n"
          "jax.jit(lambda x: x * 2.0 + 1.0)(jnp.ones(3)).block_until_ready()\n")
  env = dict(os.environ, DFI_JAX_BANK_CACHE=str(tmp_path), JAX_COMPILATION_CACHE_DIR="")
  subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
  assert [p for p in (tmp_path / "xla").rglob("*") if p.is_file()]
