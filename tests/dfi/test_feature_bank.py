"""Edit runs on a bank built by `experiments.build_bank` (`--config.bank_dir`), on one device.

The bank must match the run (one line naming the field otherwise) and gives the neighbours and w
of the in-memory bank. Whole runs on a disk bank, compared with the in-memory run on one device,
are in tests/dfi/test_sharding.py (8 devices; 2 processes, opt-in).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfi_jax.dfi import attribute_vector
from dfi_jax.dfi import bank as bank_lib
from dfi_jax.runs import kit
from dfi_jax.runs import run_bank
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.base import run_state
from dfi_jax.data import banks
from dfi_jax.data import sources
from dfi_jax.nets import weights as weights_lib
from experiments.configs import synthetic
import tiny_bank

ROOT = Path(__file__).resolve().parents[2]


def tiny(**overrides):
  config = synthetic.get_config("tiny")
  config.probe = ""
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """The tiny config's bank on disk twice: φ itself as search features, and a pool:1 search."""
  root = tmp_path_factory.mktemp("banks")
  network = tiny_bank.build(tiny(), root / "none")
  tiny_bank.build(tiny(), root / "pool", search="pool:1")
  return root, network


def test_a_bank_built_for_other_settings_is_one_line_naming_the_field(built, tmp_path):
  root, network = built
  spec = features_lib.feature_spec(network.net, network.params, (32, 32))
  load = lambda c: kit.load_bank(c, network, spec, None)
  for field, value, named in (("taps", ("conv2_1", "conv3_2"), "taps"),
                              ("image_size", 64, "image_size"),
                              ("bank_size", 41, "bank_size"), ("bank_seed", 1, "bank_seed")):
    config = tiny(bank_dir=str(root / "none"), **{field: value})
    with pytest.raises(run_state.RunError, match=f"bank_dir={root / 'none'}: {named}: the bank "
                       "was built with") as e:
      load(config)
    assert "\n" not in str(e.value)
  # Other weights: the same layout, another file.
  other = tmp_path / "other.npz"
  params, provenance = weights_lib.load_weights(network.path)
  weights_lib.save_weights(other, {k: {n: v * 2 for n, v in p.items()} for k, p in params.items()},
                           provenance)
  config = tiny(bank_dir=str(root / "none"), weights=str(other))
  with pytest.raises(run_state.RunError, match=r"weights \(the file's sha256\)"):
    kit.load_bank(config, kit.load_network(config), spec, None)
  # Unfinished, not a bank.
  manifest = json.loads((root / "none" / "bank.json").read_text())
  unfinished = tmp_path / "unfinished"
  unfinished.mkdir()
  (unfinished / "bank.json").write_text(json.dumps(dict(manifest, complete=False)))
  with pytest.raises(run_state.RunError, match="the bank is unfinished"):
    kit.read_bank_manifest(tiny(bank_dir=str(unfinished)))
  with pytest.raises(run_state.RunError, match="is not a bank"):
    kit.read_bank_manifest(tiny(bank_dir=str(tmp_path)))
  assert kit.read_bank_manifest(tiny()) is None


def test_feature_bank_raises_its_own_error_and_the_run_kit_words_it_for_the_flag(built):
  root, network = built
  config = tiny(bank_dir=str(root / "none"), taps=("conv2_1", "conv3_2"))
  with pytest.raises(feature_bank.BankError, match="^taps: the bank was built with") as e:
    run_bank.read_manifest(config)
  assert not isinstance(e.value, run_state.RunError) and "--config" not in str(e.value)
  spec = features_lib.feature_spec(network.net, network.params, (32, 32))
  with pytest.raises(feature_bank.BankError, match="^taps: the bank was built with"):
    run_bank.load(config, network, spec, None)
  flag = re.escape(f"--config.bank_dir={root / 'none'}: taps: the bank was built with")
  with pytest.raises(run_state.RunError, match=f"^{flag}"):
    kit.read_bank_manifest(config)
  with pytest.raises(run_state.RunError, match=f"^{flag}"):
    kit.load_bank(config, network, spec, None)


def test_the_command_refuses_a_mismatched_bank_before_touching_the_workdir(built, tmp_path):
  root, _ = built
  workdir = tmp_path / "w"
  proc = subprocess.run([sys.executable, "-m", "experiments.transform", f"--workdir={workdir}",
                         "--config=experiments/configs/synthetic.py:tiny",
                         f"--config.bank_dir={root / 'none'}", "--config.image_size=64"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "image_size: the bank was built with 32" in lines[0], proc.stderr
  assert not workdir.exists()


@pytest.mark.parametrize("rule", ["features", "attributes"])
def test_disk_bank_gives_the_in_memory_neighbours_and_w(built, rule):
  root, network = built
  config = tiny(neighbours=rule)
  data = banks.load_bank(config)
  edits = kit.select_edits(data, ())
  masks = {e.name: neighbours_lib.candidate_masks(data.attributes, e, data.attribute_names)
           for e in edits}
  tests = sources.load_tests(config, data, edits)
  phi = features_lib.make_phi(network.net)
  phi_x = features_lib.compute_features(phi, network.params, tests.images, config.feature_batch)
  memory = feature_bank.in_memory(data.images, lambda im: features_lib.compute_features(
      phi, network.params, im, config.feature_batch), phi_x.shape[1])
  how = feature_bank.Search(config.k, config.neighbours)
  want = feature_bank.find_neighbours(data, memory, tests, phi_x, masks, how)
  for kind in ("none", "pool"):
    disk = bank_lib.open_bank(root / kind)
    bank = feature_bank.on_disk(disk)
    assert np.array_equal(disk.attributes, data.attributes) and disk.names == data.names
    got = feature_bank.find_neighbours(data, bank, tests, phi_x, masks, how)
    for e in edits:
      w_want = attribute_vector.from_rows(want.bank, want.used, want.sets[e.name])
      w_got = attribute_vector.from_rows(got.bank, got.used, got.sets[e.name])
      if kind == "none" or rule == "attributes":  # the same space: the same neighbours
        np.testing.assert_array_equal(got.sets[e.name].source, want.sets[e.name].source)
        np.testing.assert_array_equal(got.sets[e.name].target, want.sets[e.name].target)
        np.testing.assert_allclose(w_got, w_want, rtol=1e-5, atol=1e-6)
      else:  # ranked in the pooled space: the brute-force nearest there
        q = np.asarray(bank.reduce(phi_x))
        search = bank_lib.read_search(disk)
        distance = ((q[:, None] - search[None]) ** 2).sum(-1)
        for b in range(len(q)):
          for which, mask in zip(("source", "target"), masks[e.name]):
            cands = np.flatnonzero(mask)
            order = cands[np.lexsort((cands, distance[b, cands]))][:config.k]
            assert sorted(getattr(got.sets[e.name], which)[b]) == sorted(order)
      # w is the neighbour-mean difference of the stored φ, whatever the search space.
      phi_all = bank_lib.read_phi(disk)
      nb = got.sets[e.name]
      np.testing.assert_allclose(w_got, phi_all[nb.target].mean(1) - phi_all[nb.source].mean(1),
                                 rtol=1e-5, atol=1e-5)
    if rule == "attributes" or kind == "pool":  # φ read for just the used rows
      assert len(got.used) < disk.num_images and got.bank.shape[0] == len(got.used)


def test_lazy_bank_images_index_like_an_array():
  """A disk bank's images are read on demand (`run_bank.lazy_images`); the probe and the
  pixel baseline index them as arrays."""
  config = tiny()
  lazy = run_bank.lazy_images(config, config.bank_size)
  whole = banks.load_bank(config).images
  np.testing.assert_array_equal(lazy[[3, 1]], whole[[3, 1]])
  np.testing.assert_array_equal(lazy[:4, :16, 8:], whole[:4, :16, 8:])
  np.testing.assert_array_equal(lazy[2, 5:9], whole[2, 5:9])


def test_runs_that_cannot_use_a_feature_bank_refuse_it_and_sweeps_check_every_setting(built,
                                                                                      tmp_path):
  """highres warps each neighbour onto the test face and inpainting masks it, so a bank of plain
  φ cannot serve them: one line, nothing written. A sweep checks the bank against every
  setting before its first run."""
  from dfi_jax.runs import highres
  from dfi_jax.runs import inpaint
  from dfi_jax.runs import sweep
  from experiments.configs import highres as highres_config
  from experiments.configs import inpaint as inpaint_config
  root, _ = built
  config = highres_config.get_config("tiny")
  config.bank_dir = str(root / "none")
  with pytest.raises(run_state.RunError, match="high-resolution edits average φ of neighbours "
                     "warped"):
    highres.run(config, tmp_path / "highres")
  config = inpaint_config.get_config("shoes_tiny")
  config.bank_dir = str(root / "none")
  with pytest.raises(run_state.RunError, match="holds a feature bank"):
    inpaint.run(config, tmp_path / "inpaint")
  with pytest.raises(run_state.RunError, match="taps: the bank was built with"):
    sweep.run_sweep(tiny(bank_dir=str(root / "none")), tmp_path / "sweep",
                    ("taps", [("conv2_1", "conv3_1"), ("conv2_1",)]))
  assert not any(tmp_path.iterdir())
