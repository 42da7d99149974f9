"""The on-disk feature bank: build, resume, dtypes, search reductions, streamed neighbour means."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfi_jax.dfi import bank as bank_lib
from dfi_jax.dfi import features as features_lib
from dfi_jax.data import faces
from dfi_jax.nets import model as model_lib
from dfi_jax.dfi.neighbours import Neighbours
import w_reference

SIZE, N, SHARD, BATCH = 32, 20, 8, 4


def tiny_params(width=1 / 16, last="conv5_1", seed=0):
  """He-initialised VGG19 params (weights.init_random draws them with NumPy)."""
  from dfi_jax.nets import weights as weights_lib
  return weights_lib.init_random(seed, width, last)


@pytest.fixture(scope="module")
def tiny():
  params = tiny_params()
  net = model_lib.VGG19(width=1 / 16)
  spec = features_lib.feature_spec(net, params, (SIZE, SIZE))
  phi = features_lib.make_phi(net)
  stream = bank_lib.synthetic_stream(N, SIZE, first_seed=5)
  images, attributes = faces.generate(range(5, 5 + N), SIZE)
  reference = features_lib.compute_features(phi, params, images, BATCH)
  return params, spec, phi, stream, attributes, reference


def _build(path, tiny, **kw):
  params, spec, phi, stream, *_ = tiny
  kw = dict(shard_size=SHARD, batch_size=BATCH) | kw
  return bank_lib.build(path, kw.pop("stream", stream), kw.pop("phi_fn", phi), params, spec,
                        **kw)


def test_build_matches_in_memory_features(tmp_path, tiny):
  *_, attributes, reference = tiny
  report = _build(tmp_path, tiny)
  assert report.complete and report.built == [0, 1, 2] and report.skipped == []
  bank = bank_lib.open_bank(tmp_path)
  assert bank.num_images == N and bank.names == [f"face{s}" for s in range(5, 5 + N)]
  np.testing.assert_array_equal(bank.attributes, attributes)
  np.testing.assert_allclose(bank_lib.read_phi(bank), reference, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(bank_lib.read_phi(bank, 6, 17), reference[6:17], rtol=1e-6,
                             atol=1e-6)
  np.testing.assert_array_equal(bank_lib.read_search(bank), bank_lib.read_phi(bank))
  assert not list(tmp_path.glob("shards/.*"))  # no temp files left behind


def test_resume_skips_finished_shards(tmp_path, tiny):
  params, spec, phi, stream, _, reference = tiny
  seen = []
  counting = stream._replace(read=lambda a, b: (seen.append((a, b)), stream.read(a, b))[1])
  first = _build(tmp_path, tiny, stream=counting, stop_after=1)
  assert first.built == [0] and not first.complete
  with pytest.raises(bank_lib.BankError, match="unfinished"):
    bank_lib.open_bank(tmp_path)
  shard0 = tmp_path / "shards" / "00000.phi.npy"
  stamp = os.stat(shard0).st_mtime_ns

  # An interruption in the middle of shard 1: nothing of it stays on disk.
  def failing(a, b):
    if a >= 12:
      raise KeyboardInterrupt
    return stream.read(a, b)
  with pytest.raises(KeyboardInterrupt):
    _build(tmp_path, tiny, stream=stream._replace(read=failing))
  assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
      "00000.attributes.npy", "00000.json", "00000.phi.npy"]

  seen.clear()
  done = []
  second = _build(tmp_path, tiny, stream=counting, progress=done.append)
  assert second.skipped == [0] and second.built == [1, 2] and second.complete
  assert min(a for a, _ in seen) == SHARD  # shard 0's images were not read again
  assert sum(done) == N and os.stat(shard0).st_mtime_ns == stamp
  np.testing.assert_allclose(bank_lib.read_phi(bank_lib.open_bank(tmp_path)), reference,
                             rtol=1e-6, atol=1e-6)


def test_other_settings_are_refused_unless_overwrite(tmp_path, tiny):
  _build(tmp_path, tiny)
  with pytest.raises(bank_lib.BankError, match="dtype"):
    _build(tmp_path, tiny, dtype="bfloat16")
  report = _build(tmp_path, tiny, dtype="bfloat16", overwrite=True)
  assert report.built == [0, 1, 2]
  assert bank_lib.open_bank(tmp_path).manifest["dtype"] == "bfloat16"


def test_bfloat16_halves_the_bytes_and_keeps_bf16_precision(tmp_path, tiny):
  *_, reference = tiny
  _build(tmp_path / "f32", tiny)
  _build(tmp_path / "bf16", tiny, dtype="bfloat16")
  size = lambda p: (p / "shards" / "00000.phi.npy").stat().st_size - 128  # minus .npy header
  assert size(tmp_path / "bf16") * 2 == size(tmp_path / "f32")
  bank = bank_lib.open_bank(tmp_path / "bf16")
  assert bank_lib.shard_phi(bank, 0).dtype == jnp.bfloat16
  got = bank_lib.read_phi(bank)
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, reference, rtol=2 ** -8, atol=1e-30)
  with pytest.raises(ValueError, match="dtype"):
    _build(tmp_path / "x", tiny, dtype="float16")


def test_search_reductions(tmp_path, tiny):
  _, spec, *_, reference = tiny
  reduce = jax.jit(bank_lib.reduce_for_search, static_argnums=(1, 2))
  pool = bank_lib.parse_search("pool:2")
  pooled = np.asarray(reduce(reference, spec, pool))
  assert pooled.shape == (N, bank_lib.search_dim(pool, spec))
  # By hand: conv3_1 is 8x8x16, so its 2x2 pool averages 4x4 blocks.
  h, w, c = spec.shapes[0]
  tap = reference[:, :h * w * c].reshape(N, h, w, c)
  want = tap.reshape(N, 2, 4, 2, 4, c).mean(axis=(2, 4)).reshape(N, -1)
  np.testing.assert_allclose(pooled[:, :4 * c], want, rtol=1e-5, atol=1e-6)

  projection = bank_lib.parse_search("projection:16", seed=3)
  projected = np.asarray(reduce(reference, spec, projection))
  again = np.asarray(reduce(reference[:3], spec, projection))
  np.testing.assert_allclose(projected[:3], again, rtol=1e-5, atol=1e-5)
  # Johnson-Lindenstrauss: squared norms kept on average.
  ratio = np.sum(projected ** 2, -1) / np.sum(reference ** 2, -1)
  assert 0.5 < np.mean(ratio) < 1.5

  _build(tmp_path, tiny, search=projection)
  bank = bank_lib.open_bank(tmp_path)
  assert bank.search == projection
  np.testing.assert_allclose(bank_lib.read_search(bank), projected, rtol=1e-4, atol=1e-4)
  for bad in ("pool", "pool:0", "projection:x", "pca:3", "none:2"):
    with pytest.raises(ValueError, match="search reduction"):
      bank_lib.parse_search(bad)


def test_attribute_vector_streams_the_same_means(tmp_path, tiny):
  *_, reference = tiny
  _build(tmp_path, tiny)
  bank = bank_lib.open_bank(tmp_path)
  rng = np.random.default_rng(0)
  idx = rng.permutation(N)
  nb = Neighbours(np.stack([idx[:5], idx[5:10], idx[10:15]]),
                  np.stack([idx[15:20], idx[:5], idx[10:15][::-1]]))
  want = w_reference.mean_difference(reference, nb)
  for rows_per_read in (1, 3, 64):
    got = bank_lib.attribute_vector(bank, nb, rows_per_read=rows_per_read)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="indices"):
    bank_lib.attribute_vector(bank, Neighbours(nb.source, nb.target + N))


def test_open_bank_errors(tmp_path):
  with pytest.raises(bank_lib.BankError, match="not a bank"):
    bank_lib.open_bank(tmp_path)
  (tmp_path / "bank.json").write_text(json.dumps({"format": "other"}))
  with pytest.raises(bank_lib.BankError, match="format"):
    bank_lib.open_bank(tmp_path)


def test_group_is_stored_when_the_data_has_one(tmp_path, tiny):
  *_, stream, attributes, _ = tiny
  grouped = stream._replace(
      has_group=True,
      read=lambda a, b: stream.read(a, b)._replace(group=np.arange(a, b) % 3))
  _build(tmp_path / "g", tiny, stream=grouped)
  np.testing.assert_array_equal(bank_lib.open_bank(tmp_path / "g").group, np.arange(N) % 3)
  _build(tmp_path / "none", tiny)
  assert bank_lib.open_bank(tmp_path / "none").group is None
