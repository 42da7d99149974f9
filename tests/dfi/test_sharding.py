"""Sharded bank, KNN, neighbour means, reverse maps and whole edit runs on 8 fake CPU devices.

The device count is fixed when JAX starts, so `test_on_eight_fake_cpu_devices` reruns this file
in a child pytest with `XLA_FLAGS=--xla_force_host_platform_device_count=8`; every other test here
runs only there, and the rest of the suite keeps one device. Meanwhile the parent makes the
single-device reference of the child's edit run (in memory, one device) and compares: the
child's run reads a disk bank over 8 devices.
"""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CHILD = os.environ.get("DFI_TEST_FAKE_DEVICES") == "8"
in_child = pytest.mark.skipif(not CHILD, reason="runs in the 8-device child process")
ROOT = Path(__file__).resolve().parents[2]


def run_config(**overrides):
  """The whole edit run compared between 8 devices and one (tiny, two edits, two δ; the default
  solver, L-BFGS without line search: it compiles in 2/3 of the time of the tiny config's)."""
  from experiments.configs import synthetic
  config = synthetic.get_config("tiny")
  config.attributes, config.probe = ("eyeglasses", "smiling"), ""
  config.solver, config.linesearch = "optax_lbfgs", "none"
  for key, value in overrides.items():
    config[key] = value
  return config


# `run_config` as the command line gives it: the two-host test's `transform` runs with these, so
# its run is the in-process reference's (test_run_flags_give_run_config holds them together).
RUN_FLAGS = ("--config=experiments/configs/synthetic.py:tiny",
             "--config.attributes=eyeglasses,smiling", "--config.probe=",
             "--config.solver=optax_lbfgs", "--config.linesearch=none")


def parse_run_flags(*extra):
  """The run config `transform RUN_FLAGS extra` edits with (parsed as the CLI parses it, the
  comma lists split as the run splits them)."""
  from absl import flags
  from ml_collections import config_flags
  from dfi_jax.base import run_state
  argv = ["prog", *RUN_FLAGS, *extra]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=values, sys_argv=argv)
  values(argv)
  return run_state.split_lists(values.config)


@pytest.mark.skipif(CHILD, reason="no devices needed: runs once, in the parent")
def test_run_flags_give_run_config(tmp_path):
  """The command line of the two-host edit run is the reference run's config, field for field
  (it once lacked the solver: the two hosts ran the tiny config's L-BFGS-B with line search)."""
  bank = f"--config.bank_dir={tmp_path / 'bank'}"
  assert parse_run_flags(bank).to_dict() == run_config(bank_dir=str(tmp_path / "bank")).to_dict()


def assert_same_run(got: Path, want: Path, atol=1e-6):
  """Two workdirs of `run_config`: every edit within `atol` (the kept float32 state), the grid
  and each edit's metrics from them alike, the pixel baselines (which read the neighbours'
  pixels) identical."""
  from PIL import Image
  a, b = (json.loads((d / "metrics.json").read_text()) for d in (got, want))
  assert a["outputs"]["edits"] == b["outputs"]["edits"] and len(b["outputs"]["edits"]) == 8
  assert len(a["per_image"]) == len(b["per_image"]) == 8
  for ra, rb in zip(a["per_image"], b["per_image"]):
    assert {k: ra[k] for k in ra if k.startswith("baseline")} == \
        {k: rb[k] for k in rb if k.startswith("baseline")}
    assert (ra["image"], ra["attribute"], ra["delta"]) == (rb["image"], rb["attribute"],
                                                           rb["delta"])
    np.testing.assert_allclose([ra["r"], ra["outside"]], [rb["r"], rb["outside"]], rtol=1e-4,
                               atol=1e-5)
  grids = [np.asarray(Image.open(d / "grid.png"), np.int16) for d in (got, want)]
  assert np.abs(grids[0] - grids[1]).max() <= 1  # 8-bit rounding of values 1e-6 apart
  for rel in b["outputs"]["edits"]:
    state = "state/" + Path(rel).name.replace(".png", ".npz")
    np.testing.assert_allclose(np.load(got / state)["image"], np.load(want / state)["image"],
                               rtol=0, atol=atol, err_msg=rel)


@pytest.mark.skipif(CHILD, reason="this is the child")
def test_on_eight_fake_cpu_devices(tmp_path):
  from dfi_jax.runs import edit as edit_run
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  env = dict(os.environ, XLA_FLAGS=flags.strip(), DFI_TEST_FAKE_DEVICES="8",
             JAX_PLATFORMS="cpu", DFI_TEST_SHARED=str(tmp_path))
  child = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                            "-W", "ignore::DeprecationWarning", __file__], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    edit_run.run(run_config(), tmp_path / "one_device")  # the reference, meanwhile
    stdout, stderr = child.communicate(timeout=900)
  finally:
    child.kill()
  assert child.returncode == 0, stdout[-8000:] + stderr[-4000:]
  assert "8 passed, 4 skipped" in stdout, stdout[-2000:]
  assert_same_run(tmp_path / "eight_devices", tmp_path / "one_device")


_TWO_HOSTS = """
import sys, numpy as np
sys.path.insert(0, "tests")
import neighbours_reference
from dfi_jax.dfi import attribute_vector
from dfi_jax.dfi import neighbours as nl
from dfi_jax.dfi import sharding
from dfi_jax.runs import hosts
hosts.initialize(True, hosts.DistributedSettings(sys.argv[1], 2, int(sys.argv[2])))
import jax
assert jax.process_count() == 2 and jax.device_count() == 8
mesh = sharding.make_mesh()
rng = np.random.default_rng(0)
bank = rng.standard_normal((1003, 16)).astype(np.float32)
queries = rng.standard_normal((5, 16)).astype(np.float32)
source = rng.random(1003) < 0.4
rows = sharding.shard_rows(bank, mesh)
assert all(s.index[0].start // 504 == jax.process_index() for s in rows.addressable_shards)
got = nl.search(nl.make_knn(mesh, 7), rows, queries, nl.Candidates(source, ~source))
want = neighbours_reference.feature_neighbours(bank, queries, source, ~source, 7)
assert np.array_equal(got.source, want.source) and np.array_equal(got.target, want.target)
w = attribute_vector.on_mesh(mesh)(rows, got)
want_w = bank[np.asarray(want.target)].mean(1) - bank[np.asarray(want.source)].mean(1)
assert np.allclose(w, want_w, rtol=1e-5, atol=1e-6)
sharding.barrier("done")
print("ok", jax.process_index())
"""


def two_hosts(command, devices=4):
  """Runs `command(process_index, coordinator_address)` (an argv) as two processes of `devices`
  CPU devices each, joined by jax.distributed (gloo); returns [(returncode, output)]."""
  import socket
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    address = f"localhost:{sock.getsockname()[1]}"
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  env.pop("DFI_TEST_FAKE_DEVICES", None)
  procs = [subprocess.Popen(command(i, address), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  try:
    return [(p.communicate(timeout=900)[0], p.returncode)[::-1] for p in procs]
  finally:
    for p in procs:
      p.kill()


TWO_HOSTS_OPT_IN = pytest.mark.skipif(CHILD or not os.environ.get("DFI_TEST_TWO_HOSTS"),
                                      reason="opt-in (DFI_TEST_TWO_HOSTS=1): two processes")


@TWO_HOSTS_OPT_IN
def test_two_hosts_of_four_devices():
  """Two processes x 4 CPU devices joined by jax.distributed (gloo): the multi-host path."""
  results = two_hosts(lambda i, address: [sys.executable, "-c", _TWO_HOSTS, address, str(i)])
  for i, (code, out) in enumerate(results):
    assert code == 0 and f"ok {i}" in out, out[-4000:]


def _cli(module, *args):
  return lambda i, address: [sys.executable, "-m", module, "--distributed",
                             f"--coordinator_address={address}", "--num_processes=2",
                             f"--process_id={i}", *args]


def _error_lines(out):
  return [l for l in out.splitlines() if l.startswith("error:")]


@TWO_HOSTS_OPT_IN
def test_two_hosts_edit_resume_and_study(tmp_path):
  """`transform --distributed` on 2 processes x 2 devices sharing a workdir and a disk bank:
  the outputs of the single-device in-memory run; a lock refusal, a bad setting or a missing
  file on one host stops both with one line; a deleted item is recomputed with its batch only;
  `study_stimuli --distributed` writes a shard per host and process 0 the page linking them."""
  from dfi_jax.runs import edit as edit_run
  from dfi_jax.base import workdir_lock
  from dfi_jax.eval.study import analysis
  import tiny_bank
  tiny_bank.build(run_config(), tmp_path / "bank")
  edit_run.run(run_config(), tmp_path / "one_device")
  workdir = tmp_path / "two_hosts"
  transform = _cli("experiments.transform", f"--workdir={workdir}", *RUN_FLAGS,
                   f"--config.bank_dir={tmp_path / 'bank'}")

  workdir.mkdir()  # another run holds the workdir: both hosts stop, each with one line
  with workdir_lock.hold_lock(workdir / workdir_lock.LOCK, "test"):
    (code0, out0), (code1, out1) = two_hosts(transform, devices=2)
  assert code0 == code1 == 1, out0 + out1
  assert len(_error_lines(out0)) == 1 and "is in use by another run" in out0, out0
  assert _error_lines(out1) == [f"error: RunError: process 0 stopped: --workdir={workdir} is "
                                f"in use by another run (pid {os.getpid()}); wait for it to "
                                "finish or use another path"], out1
  assert not list(workdir.glob("state/*")) and not (workdir / "metrics.json").exists()

  # One host fails alone, in the settings check or in the run's set-up: both stop, one line.
  missing = tmp_path / "missing.npz"
  for bad, line in (("--config.k=0", "--config.k=0: expected a positive integer"),
                    (f"--config.weights={missing}", str(missing))):
    (code0, out0), (code1, out1) = two_hosts(
        lambda i, address: transform(i, address) + ([bad] if i == 1 else []), devices=2)
    assert code0 == code1 == 1, out0 + out1
    assert len(_error_lines(out1)) == 1 and line in _error_lines(out1)[0], out1
    own = _error_lines(out1)[0].removeprefix("error: ").removeprefix("RunError: ")
    assert _error_lines(out0) == [f"error: RunError: process 1 stopped: {own}"], out0
  assert not list(workdir.glob("state/*")) and not (workdir / "run.json").exists()

  (code0, out0), (code1, out1) = two_hosts(transform, devices=2)
  assert code0 == code1 == 0, out0[-3000:] + out1[-3000:]
  assert "wrote" in out0 and "ran 4 edits here; process 0 wrote the outputs" in out1, out1
  assert_same_run(workdir, tmp_path / "one_device")

  # Items are (image, edit) pairs, image-major within each edit: process 1 has image 1's. Its
  # second δ of one edit goes; only process 1's batch of that δ is recomputed (resuming works
  # by batch, as on one host), everything else stays as it was.
  images = json.loads((workdir / "metrics.json").read_text())["images"]
  state = sorted((workdir / "state").glob("*.npz"))
  stamps = {p: p.stat().st_mtime_ns for p in state
            if p.name.startswith(images[0]) or "__d0.4" in p.name}
  assert len(stamps) == 6
  gone = workdir / "state" / f"{images[1]}__smiling__d0.8.npz"
  gone.unlink()
  (workdir / "edits" / gone.name.replace(".npz", ".png")).unlink()
  (workdir / "metrics.json").unlink()
  (code0, out0), (code1, out1) = two_hosts(transform, devices=2)
  assert code0 == code1 == 0, out0[-3000:] + out1[-3000:]
  assert "resuming" in out0 and gone.exists() and (workdir / "metrics.json").exists()
  assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
  assert_same_run(workdir, tmp_path / "one_device")

  study = tmp_path / "study"
  results = two_hosts(_cli("experiments.study_stimuli", f"--runs={workdir}",
                           f"--out_dir={study}"), devices=1)
  assert [code for code, _ in results] == [0, 0], results
  assert (study / "index.html").exists() and "shard_001_of_002/index.html" in (
      study / "index.html").read_text()
  manifests = [json.loads(p.read_text()) for p in sorted(study.glob("shard_*/trials.json"))]
  assert [m["shard_index"] for m in manifests] == [0, 1]
  total = manifests[0]["num_main_trials_total"]
  assert sum(m["num_main_trials"] for m in manifests) == total == 4  # 2 faces x 2 edits, top δ
  loaded = analysis.load_study([study])  # the analysis reads both shards from the folder
  assert sum(t["kind"] == "main" for t in loaded.trials.values()) == total


if CHILD:
  import jax
  import ml_collections
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P

  from dfi_jax.dfi import bank as bank_lib
  from dfi_jax.runs import edit as edit_run
  from dfi_jax.runs import hosts
  from dfi_jax.runs import kit
  from dfi_jax.data import faces
  from dfi_jax.dfi import feature_bank
  from dfi_jax.dfi import features as features_lib
  import neighbours_reference
  import w_reference
  from dfi_jax.dfi import attribute_vector
  from dfi_jax.dfi.neighbours import Candidates
  from dfi_jax.nets import model as model_lib
  from dfi_jax.dfi import neighbours as neighbours_lib
  from dfi_jax.dfi import reconstruct
  from dfi_jax.dfi import sharding
  from dfi_jax.data import banks
  from dfi_jax.data import sources
  import tiny_bank


def tiny_params(width=1 / 16, last="conv5_1", seed=0):
  """He-initialised VGG19 params (weights.init_random draws them with NumPy)."""
  from dfi_jax.nets import weights as weights_lib
  return weights_lib.init_random(seed, width, last)


@contextlib.contextmanager
def count_compiles():
  """Counts XLA backend compilations inside the block (`n[0]`)."""
  n = [0]

  def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      n[0] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield n
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == 8
  return sharding.make_mesh()


@in_child
def test_mesh_set_up(mesh):
  assert dict(mesh.shape) == {"data": 8}
  assert dict(sharding.make_mesh((2, -1), ("data", "model")).shape) == {"data": 2, "model": 4}
  with pytest.raises(ValueError, match="needs 6 devices"):
    sharding.make_mesh((6,))
  hosts.initialize(False)  # one host: nothing to do
  assert sharding.is_writer()
  sharding.barrier("noop")


def _equal(a, b):
  np.testing.assert_array_equal(np.asarray(a.source), np.asarray(b.source))
  np.testing.assert_array_equal(np.asarray(a.target), np.asarray(b.target))


@in_child
@pytest.mark.parametrize("values", ["float", "integer"])
def test_sharded_knn_equals_single_device(mesh, values):
  rng = np.random.default_rng(0)
  n, d, b = 1003, 16, 5  # n not a multiple of 8: padding rows must never be chosen
  if values == "float":
    bank = rng.standard_normal((n, d)).astype(np.float32)
    queries = rng.standard_normal((b, d)).astype(np.float32)
  else:  # small integers: exact distances and many ties, broken by lowest index
    bank = rng.integers(0, 2, (n, d)).astype(np.float32)
    queries = bank[:b].copy()
  source = rng.random(n) < 0.4
  target = ~source
  exclude = np.asarray([0, 1, -1, 3, 500], np.int32)
  rows = sharding.shard_rows(bank, mesh)
  assert rows.sharding.spec == P("data", None)
  assert {s.data.shape for s in rows.addressable_shards} == {(126, d)}
  for k in (7, 200):  # 200 > 126 rows per device
    knn = neighbours_lib.make_knn(mesh, k)
    got = neighbours_lib.search(knn, rows, queries, Candidates(source, target), exclude)
    want = neighbours_reference.feature_neighbours(bank, queries, source, target, k, exclude)
    _equal(got, want)
  with pytest.raises(ValueError, match="queries must be"):
    neighbours_lib.search(knn, rows, queries[:, :3], Candidates(source, target))
  with pytest.raises(ValueError, match="masks"):
    neighbours_lib.search(knn, rows, queries, Candidates(source[:10], target[:10]))


@in_child
def test_sharded_attribute_neighbours_equal_single_device(mesh):
  rng = np.random.default_rng(1)
  n, b, k = 301, 6, 20
  attributes = rng.random((n, 6)) < 0.3
  queries = rng.random((b, 6)) < 0.3
  source, target = attributes[:, 2], ~attributes[:, 2]
  exclude = np.asarray([4, -1, 7, 8, -1, 300], np.int32)
  allowed = rng.random((b, n)) < 0.8
  knn = neighbours_lib.make_knn(mesh, k, metric="hamming")
  got = neighbours_lib.search(knn, sharding.shard_rows(attributes, mesh), queries,
                              Candidates(source, target), exclude, allowed)
  want = neighbours_reference.attribute_neighbours(attributes, queries, source, target, k,
                                                   exclude, allowed)
  _equal(got, want)


@in_child
def test_neighbour_means_where_rows_live_and_no_recompiles(mesh, tmp_path):
  rng = np.random.default_rng(2)
  n, dim, b, k = 37, 64, 4, 5
  phi = rng.standard_normal((n, dim)).astype(np.float32)
  rows = sharding.shard_rows(phi, mesh)
  sharded_w = attribute_vector.on_mesh(mesh)
  knn = neighbours_lib.make_knn(mesh, k)
  source = rng.random(n) < 0.5
  with count_compiles() as compiles:
    for batch in range(3):
      queries = rng.standard_normal((b, dim)).astype(np.float32)
      nb = neighbours_lib.search(knn, rows, queries, Candidates(source, ~source))
      w = sharded_w(rows, nb)
      assert w.sharding.is_fully_replicated
      want = w_reference.mean_difference(phi, nb)
      np.testing.assert_allclose(np.asarray(w), np.asarray(want), rtol=1e-5, atol=1e-6)
      if batch == 0:
        first = compiles[0]
  assert first > 0  # the counter sees compiles...
  assert compiles[0] == first  # ...and batches 2 and 3 of the same shape add none


@in_child
def test_bank_to_mesh_reads_each_devices_rows(mesh, tmp_path):
  params = tiny_params(last="conv3_1")
  net = model_lib.VGG19(taps=("conv2_1", "conv3_1"), width=1 / 16)
  spec = features_lib.feature_spec(net, params, (32, 32))
  phi = features_lib.make_phi(net)
  stream = bank_lib.synthetic_stream(13, 32)
  bank_lib.build(tmp_path, stream, phi, params, spec, shard_size=4, batch_size=4,
                 search=bank_lib.parse_search("pool:1"))
  bank = bank_lib.open_bank(tmp_path)
  for what, read in (("search", bank_lib.read_search), ("phi", bank_lib.read_phi)):
    rows = feature_bank.bank_to_mesh(bank, mesh, what)
    assert rows.shape[0] == 16 and rows.sharding.spec == P("data", None)
    np.testing.assert_array_equal(np.asarray(rows)[:13], read(bank))
    np.testing.assert_array_equal(np.asarray(rows)[13:], 0)


@in_child
def test_run_neighbours_and_w_are_the_same_on_one_and_eight_devices(mesh, tmp_path):
  """`feature_bank` on a disk bank (float32 and bfloat16 φ) and on the in-memory bank, both rules,
  bank test images excluded, groups: the same indices on 1 device and on 8, and the same w (the
  sums of the 8 devices' rows are added in another order: within float32 rounding)."""
  one = sharding.make_mesh(devices=jax.devices()[:1])
  base = run_config(bank_size=59, k=3)  # not a multiple of 8; >= 5 candidates per set, group
  network = tiny_bank.build(base, tmp_path / "none", shard_size=16)
  tiny_bank.build(base, tmp_path / "bf16", dtype="bfloat16")
  phi = features_lib.make_phi(network.net)
  for rule in ("features", "attributes"):
    config = run_config(bank_size=59, k=3, neighbours=rule)
    data = banks.load_bank(config)
    edits = kit.select_edits(data, ())
    masks = {e.name: neighbours_lib.candidate_masks(data.attributes, e, data.attribute_names)
             for e in edits}
    tests = sources.bank_tests(data, [data.names[i] for i in (0, 9, 58)])
    tests = tests._replace(group=np.asarray([0, 1, 0]))
    data = data._replace(group=np.arange(59) % 2)  # neighbours within the group (attributes)
    phi_x = features_lib.compute_features(phi, network.params, tests.images, 16)
    memory = feature_bank.in_memory(data.images, lambda im: features_lib.compute_features(
        phi, network.params, im, 16), phi_x.shape[1])
    disks = [feature_bank.on_disk(bank_lib.open_bank(tmp_path / k)) for k in ("none", "bf16")]
    for bank in [memory] + disks:
      found = [feature_bank.find_neighbours(data, bank, tests, phi_x, masks,
                                            feature_bank.Search(config.k, config.neighbours, m))
               for m in (one, mesh)]
      assert found[1].bank.sharding.mesh.size == 8
      for e in edits:
        _equal(found[0].sets[e.name], found[1].sets[e.name])
        for b, own in enumerate((0, 9, 58)):  # never its own neighbour
          assert own not in found[1].sets[e.name].source[b]
          assert own not in found[1].sets[e.name].target[b]
        w = [attribute_vector.from_rows(f.bank, f.used, f.sets[e.name]) for f in found]
        np.testing.assert_allclose(w[1], w[0], rtol=1e-5, atol=1e-6)
    assert disks[1].dtype == "bfloat16"
    if rule == "features":  # bfloat16 φ stays bfloat16 on the devices
      assert found[1].bank.dtype == jnp.bfloat16


@in_child
def test_edit_run_on_eight_devices_reads_the_disk_bank(mesh, tmp_path):
  """The parent compares this run with its own on one device, in memory: images within 1e-6
  (each δ's 4 items padded to a batch of 8 split over the devices, trimmed again)."""
  shared = Path(os.environ.get("DFI_TEST_SHARED", tmp_path))
  config = run_config(bank_dir=str(shared / "bank"))
  network = tiny_bank.build(config, shared / "bank")
  record = edit_run.run(config, shared / "eight_devices")
  assert len(record["devices"]) == 8 and not record["failures"]
  # Another batch of the same shape reuses the run's compiled, sharded reverse map.
  spec = features_lib.feature_spec(network.net, network.params, (32, 32))
  reverse_map = reconstruct.cached(network.net, spec, kit.reverse_map_config(config))
  images, _ = faces.generate(range(5), 32)
  targets = features_lib.make_phi(network.net)(network.params, images)
  with count_compiles() as compiles:
    again = sharding.reverse_maps(reverse_map, mesh, network.params, targets, images, 2)
  assert compiles[0] == 0 and again.images.shape == (5, 32, 32, 3) and again.finite.all()
