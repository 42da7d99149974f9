"""Scaling benchmark: sharded KNN vs bank size, bank build speed and memory, batched reverse maps.

  nice -n 10 python -m research.benchmark_knn [--json_out=runs/benchmark_knn.json]
  python -m research.benchmark_knn --sections=knn --sizes=1000,10000 --devices=1
  python -m research.benchmark_knn --sections=disk_knn --disk_sizes=1000,1000000 --disk_dim=64
  python -m research.benchmark_knn --sections=edit_rss --rss_sizes=1000,10000

Each measurement runs in its own child process, so devices and peak memory are its own:
  * KNN (`neighbours.make_knn`): a `[N, dim]` float32 bank of search features (default dim 256,
    e.g. `--search=projection:256` at build time), B queries, top-K source and target sets, on 1
    device and on 8 (`XLA_FLAGS=--xla_force_host_platform_device_count=8`; on CPU the 8 "devices"
    share the host's cores, so this shows the partitioning works, not a speed-up).
  * Bank build (`bank.build` of synthetic 32² faces, width-1/16 VGG19, default taps): images/s
    (rendering included, and φ alone), peak RSS — which should not grow with the image count.
  * Reverse maps: per-image time at B=1 on one device vs B=8 split over 8 devices.
  * KNN on a bank on disk (`disk_knn`): a bank of `--disk_sizes` rows of `--disk_dim`-dim random
    φ (search = φ itself) is written in the bank format as float32 and as bfloat16, then
    read onto the devices as an edit run reads it (bfloat16 stays bfloat16 there); reports the
    read time, KNN latency per query and peak RSS.
  * Peak memory of an edit run against bank size (`edit_rss`): the tiny config (32², quarter-
    width random VGG19, feature neighbours, one edit, two test faces, probe off) with its bank in
    memory, and on disk with a `pool:1` search reduction (built beforehand in another process).
Prints a table and writes JSON.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from experiments import cli

_SIZES = flags.DEFINE_list("sizes", ["1000", "10000", "100000", "1000000"], "Bank sizes N.")
_DIM = flags.DEFINE_integer("dim", 256, "Search feature dimension d.")
_QUERIES = flags.DEFINE_integer("queries", 16, "Queries per KNN call (B).")
_K = flags.DEFINE_integer("k", 100, "Neighbours per set (K).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per size (median reported).")
_DEVICES = flags.DEFINE_list("devices", ["1", "8"], "Device counts for the KNN rows.")
_BUILD_SIZES = flags.DEFINE_list("build_sizes", ["1000", "20000"], "Images per bank build.")
_REVERSE = flags.DEFINE_bool("reverse_maps", True, "Measure batched reverse maps.")
_JSON = flags.DEFINE_string("json_out", "runs/benchmark_knn.json", "Where to write JSON.")
_SECTIONS = flags.DEFINE_list("sections", ["knn", "build", "reverse", "disk_knn", "edit_rss"],
                              "What to measure.")
_DISK_SIZES = flags.DEFINE_list("disk_sizes", ["1000", "10000", "100000", "1000000"],
                                "Rows of the on-disk banks (disk_knn).")
_DISK_DIM = flags.DEFINE_integer("disk_dim", 64, "φ dimension of the on-disk banks (disk_knn).")
_RSS_SIZES = flags.DEFINE_list("rss_sizes", ["1000", "10000", "40000"],
                               "Bank sizes of the edit runs (edit_rss).")
_WORK_DIR = flags.DEFINE_string("work_dir", "", "Where banks are written ('' = a temp folder).")
_WORKER = flags.DEFINE_string("worker", "",
                              "Internal: knn | build:N | reverse | disk_knn:DTYPE | "
                              "bank:N | edit:N:memory|disk.")


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _tiny_params(width, last):
  from dfi_jax.nets import weights as weights_lib
  return weights_lib.init_random(0, width, last)


def _time_knn(knn, bank, queries, source) -> tuple[float, float]:
  """Seconds of the first (compiling) call and the median of `--repeats` further calls."""
  import jax
  import numpy as np
  from dfi_jax.dfi import neighbours
  call = lambda: jax.block_until_ready(
      neighbours.search(knn, bank, queries, neighbours.Candidates(source, ~source)))
  t = time.perf_counter()
  call()
  first = time.perf_counter() - t
  times = []
  for _ in range(_REPEATS.value):
    t = time.perf_counter()
    call()
    times.append(time.perf_counter() - t)
  return first, float(np.median(times))


def knn_worker() -> list[dict]:
  import jax
  import numpy as np
  from dfi_jax.dfi import neighbours
  from dfi_jax.dfi import sharding
  mesh = sharding.make_mesh()
  rng = np.random.default_rng(0)
  b, k, d = _QUERIES.value, _K.value, _DIM.value
  knn = neighbours.make_knn(mesh, k)
  rows = []
  for n in map(int, _SIZES.value):
    host = rng.standard_normal((n, d), dtype=np.float32)
    bank = sharding.shard_rows(host, mesh)
    del host
    source = rng.random(n) < 0.5
    queries = rng.standard_normal((b, d), dtype=np.float32)
    first, latency = _time_knn(knn, bank, queries, source)
    rows.append(dict(devices=mesh.size, n=n, dim=d, queries=b, k=k, first_call_s=first,
                     latency_ms=latency * 1e3, queries_per_s=b / latency,
                     rows_scanned_per_s=n * b / latency, peak_rss_mb=_peak_rss_mb()))
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    del bank
  return rows


def build_worker(n: int) -> dict:
  import jax
  import numpy as np
  from dfi_jax.dfi import bank as bank_lib
  from dfi_jax.dfi import features as features_lib
  from dfi_jax.nets import model as model_lib
  size, batch = 32, 32
  params = _tiny_params(1 / 16, "conv5_1")
  net = model_lib.VGG19(width=1 / 16)
  spec = features_lib.feature_spec(net, params, (size, size))
  phi = features_lib.make_phi(net)
  phi_seconds, calls = [0.0], [0]

  def timed_phi(p, images):  # φ time after the first (compiling) call
    t = time.perf_counter()
    out = jax.block_until_ready(phi(p, images))
    if calls[0]:
      phi_seconds[0] += time.perf_counter() - t
    calls[0] += 1
    return out

  stream = bank_lib.synthetic_stream(n, size)
  rss = []
  with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    bank_lib.build(tmp, stream, timed_phi, params, spec, shard_size=256, batch_size=batch,
                   search=bank_lib.parse_search("pool:1"),
                   progress=lambda _: rss.append(_peak_rss_mb()))
    seconds = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
  return dict(images=n, image_size=size, feature_dim=spec.dim, seconds=seconds,
              images_per_s=n / seconds, phi_images_per_s=(n - batch) / max(phi_seconds[0], 1e-9),
              disk_mb=disk / 1e6, peak_rss_mb=_peak_rss_mb(),
              rss_at_10pct_mb=rss[max(0, len(rss) // 10 - 1)])


def reverse_worker() -> dict:
  import jax
  import numpy as np
  from dfi_jax.data import faces
  from dfi_jax.dfi import features as features_lib
  from dfi_jax.nets import model as model_lib
  from dfi_jax.dfi import reconstruct
  from dfi_jax.dfi import sharding
  size, iterations = 32, 10
  params = _tiny_params(1 / 16, "conv3_1")
  net = model_lib.VGG19(taps=("conv2_1", "conv3_1"), width=1 / 16)
  spec = features_lib.feature_spec(net, params, (size, size))
  images, _ = faces.generate(range(8), size)
  targets = np.asarray(features_lib.make_phi(net)(params, images)) * 1.05
  reverse_map = reconstruct.ReverseMap(net, spec, reconstruct.ReverseMapConfig(
      chunk=iterations, linesearch="backtracking", linesearch_init="max"))
  mesh = sharding.make_mesh()
  out = dict(devices=mesh.size, iterations=iterations, image_size=size)
  one = jax.devices()[0]
  on_one = lambda x: jax.device_put(x, one)
  for name, run in (("b1_one_device", lambda: reverse_map(
                         params, on_one(targets[:1]), on_one(images[:1]), iterations)),
                    ("b8_one_device", lambda: reverse_map(
                         params, on_one(targets), on_one(images), iterations)),
                    ("b8_sharded", lambda: sharding.reverse_maps(
                        reverse_map, mesh, params, targets, images, iterations))):
    run()  # compile
    t = time.perf_counter()
    result = run()
    out[f"{name}_per_image_s"] = (time.perf_counter() - t) / len(result.images)
  return out


def random_bank(path: str, n: int, dim: int, dtype: str) -> None:
  """A bank in the `dfi/bank` format whose φ rows are random normal (row i from seed i // 4096),
  written without any network: for timing reads and KNN at sizes no CPU could compute."""
  import jax.numpy as jnp
  import numpy as np
  from dfi_jax.dfi import bank as bank_lib
  from dfi_jax.dfi import features as features_lib
  from dfi_jax.data.sources import Edit
  block = 4096

  def read(a, b):  # the row index travels in the "image"
    images = np.zeros((b - a, 1, 1, 3), np.float32)
    images[:, 0, 0, 0] = np.arange(a, b)
    attributes = np.random.default_rng(a).random((b - a, 2)) < 0.5
    return bank_lib.Rows(images, attributes, [f"r{i}" for i in range(a, b)])

  def phi(_, images):
    rows = np.asarray(images)[:, 0, 0, 0].astype(np.int64)
    return jnp.asarray(np.random.default_rng(int(rows[0]) // block).standard_normal(
        (len(rows), dim), dtype=np.float32))

  stream = bank_lib.ImageStream(n, ("a", "b"), (Edit("a", "a"),), read,
                                dict(data="random", bank_size=n))
  spec = features_lib.FeatureSpec(("phi",), ((1, 1, dim),))
  bank_lib.build(path, stream, phi, None, spec, shard_size=min(n, 65536), dtype=dtype,
                 batch_size=min(n, block))


def disk_knn_worker(dtype: str) -> list[dict]:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from dfi_jax.dfi import bank as bank_lib
  from dfi_jax.dfi import feature_bank
  from dfi_jax.dfi import neighbours
  from dfi_jax.dfi import sharding
  mesh = sharding.make_mesh()
  b, k, d = _QUERIES.value, _K.value, _DISK_DIM.value
  knn = neighbours.make_knn(mesh, k)
  rng = np.random.default_rng(0)
  rows = []
  with tempfile.TemporaryDirectory(dir=_WORK_DIR.value or None) as tmp:
    for n in map(int, _DISK_SIZES.value):
      path = f"{tmp}/{n}"
      t = time.perf_counter()
      random_bank(path, n, d, dtype)
      written = time.perf_counter() - t
      disk = bank_lib.open_bank(path)
      t = time.perf_counter()
      bank = jax.block_until_ready(feature_bank.bank_to_mesh(
          disk, mesh, "phi", dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32))
      read = time.perf_counter() - t
      source = disk.attributes[:, 0]
      queries = rng.standard_normal((b, d), dtype=np.float32)
      _, latency = _time_knn(knn, bank, queries, source)
      disk_mb = sum(f.stat().st_size for f in Path(path).rglob("*.phi.npy")) / 1e6
      rows.append(dict(devices=mesh.size, n=n, dim=d, dtype=dtype, queries=b, k=k,
                       write_s=written, read_s=read, phi_on_disk_mb=disk_mb,
                       latency_ms=latency * 1e3, per_query_ms=latency * 1e3 / b,
                       peak_rss_mb=_peak_rss_mb()))
      print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
      del bank, disk
      shutil.rmtree(path)
  return rows


def _rss_config(n: int, bank_dir: str = ""):
  from experiments.configs import synthetic
  config = synthetic.get_config("tiny")
  config.bank_size, config.bank_dir = n, bank_dir
  config.attributes, config.deltas, config.probe = ("eyeglasses",), (0.4,), ""
  return config


def bank_worker(n: int) -> dict:
  """The tiny config's bank of n faces on disk with a pool:1 search (for edit_rss)."""
  from dfi_jax.dfi import bank as bank_lib
  from dfi_jax.runs import kit
  from dfi_jax.runs import run_bank
  from dfi_jax.dfi import feature_bank
  from dfi_jax.dfi import features as features_lib
  config = _rss_config(n)
  network = kit.load_network(config)
  spec = features_lib.feature_spec(network.net, network.params, (config.image_size,) * 2)
  t = time.perf_counter()
  bank_lib.build(f"{_WORK_DIR.value}/bank{n}", run_bank.image_stream(config),
                 features_lib.make_phi(network.net), network.params, spec, shard_size=1024,
                 batch_size=64, search=bank_lib.parse_search("pool:1"),
                 weights=feature_bank.weights_record(network))
  return dict(n=n, build_s=time.perf_counter() - t, peak_rss_mb=_peak_rss_mb())


def edit_worker(n: int, kind: str) -> dict:
  from dfi_jax.runs import edit as edit_run
  config = _rss_config(n, f"{_WORK_DIR.value}/bank{n}" if kind == "disk" else "")
  with tempfile.TemporaryDirectory(dir=_WORK_DIR.value) as tmp:
    t = time.perf_counter()
    edit_run.run(config, f"{tmp}/run")
    seconds = time.perf_counter() - t
  return dict(n=n, bank=kind, seconds=seconds, peak_rss_mb=_peak_rss_mb())


def _child(worker: str, devices: int) -> object:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={devices}").strip()
  args = [sys.executable, "-m", "research.benchmark_knn", f"--worker={worker}",
          f"--sizes={','.join(_SIZES.value)}", f"--dim={_DIM.value}",
          f"--queries={_QUERIES.value}", f"--k={_K.value}", f"--repeats={_REPEATS.value}",
          f"--disk_sizes={','.join(_DISK_SIZES.value)}", f"--disk_dim={_DISK_DIM.value}",
          f"--work_dir={_WORK_DIR.value}"]
  result = subprocess.run(args, env=env, stdout=subprocess.PIPE, text=True)
  if result.returncode != 0:
    raise RuntimeError(f"benchmark worker {worker} on {devices} device(s) failed")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  if _WORKER.value:
    kind, *args = _WORKER.value.split(":")
    workers = dict(knn=knn_worker, reverse=reverse_worker, build=lambda n: build_worker(int(n)),
                   disk_knn=disk_knn_worker, bank=lambda n: bank_worker(int(n)),
                   edit=lambda n, k: edit_worker(int(n), k))
    print(json.dumps(workers[kind](*args)), flush=True)
    return
  import jax
  sections = set(_SECTIONS.value)
  record = dict(knn=[], build=[], reverse_maps=None, disk_knn=[], edit_rss=[],
                cpu_count=os.cpu_count(), jax=jax.__version__, load_average=os.getloadavg())
  if "knn" in sections:
    for devices in map(int, _DEVICES.value):
      record["knn"] += _child("knn", devices)
  if "build" in sections:
    for n in _BUILD_SIZES.value:
      record["build"].append(_child(f"build:{n}", 1))
  if "reverse" in sections and _REVERSE.value:
    record["reverse_maps"] = _child("reverse", 8)
  if "disk_knn" in sections:
    for dtype in ("float32", "bfloat16"):
      record["disk_knn"] += _child(f"disk_knn:{dtype}", 1)
  if "edit_rss" in sections:
    with tempfile.TemporaryDirectory(dir=_WORK_DIR.value or None) as tmp:
      flags.FLAGS.work_dir = tmp
      for n in _RSS_SIZES.value:
        built = _child(f"bank:{n}", 1)
        for kind in ("memory", "disk"):
          record["edit_rss"].append(dict(_child(f"edit:{n}:{kind}", 1), build_s=built["build_s"]))
  record["load_average_after"] = os.getloadavg()
  print_tables(record)
  Path(_JSON.value).parent.mkdir(parents=True, exist_ok=True)
  Path(_JSON.value).write_text(json.dumps(record, indent=2) + "\n")
  print(f"wrote {_JSON.value}")


def _table(title: str, columns: list[tuple[str, str, str]], rows: list[dict]) -> None:
  """Prints `rows` under `title`: columns of (header, key, format spec)."""
  if not rows:
    return
  print(f"\n{title}")
  widths = [max(len(h), 8) for h, _, _ in columns]
  print(" ".join(f"{h:>{w}}" for (h, _, _), w in zip(columns, widths)))
  for r in rows:
    print(" ".join(f"{r[k]:>{w}{f}}" for (_, k, f), w in zip(columns, widths)))


_RSS = ("peak RSS MB", "peak_rss_mb", ".0f")
# Section -> (title from its first row and the record, columns: (header, key, format)).
TABLES = {
    "knn": (lambda r, rec: f"KNN (neighbours.make_knn): d={r['dim']} float32 search features, "
            f"B={r['queries']} queries, K={r['k']} source + {r['k']} target; CPU, "
            f"{rec['cpu_count']} cores",
            [("devices", "devices", ""), ("N", "n", ""), ("latency ms", "latency_ms", ".2f"),
             ("queries/s", "queries_per_s", ".1f"), ("rows·q/s", "rows_scanned_per_s", ".3g"),
             ("compile+1st s", "first_call_s", ".2f"), _RSS]),
    "build": (lambda r, rec: f"Bank build (bank.build): synthetic {r['image_size']}² faces, "
              f"width-1/16 VGG19, D={r['feature_dim']} float32, pool:1 search, shards of 256",
              [("images", "images", ""), ("s", "seconds", ".1f"),
               ("images/s", "images_per_s", ".1f"), ("φ-only images/s", "phi_images_per_s", ".1f"),
               ("disk MB", "disk_mb", ".1f"), ("RSS at 10% MB", "rss_at_10pct_mb", ".0f"), _RSS]),
    "disk_knn": (lambda r, rec: f"KNN on a bank on disk (bank shards, read onto the devices): "
                 f"d={r['dim']} φ searched directly, B={r['queries']} queries, K={r['k']}; "
                 f"{r['devices']} device(s)",
                 [("dtype", "dtype", ""), ("N", "n", ""),
                  ("φ on disk MB", "phi_on_disk_mb", ".1f"),
                  ("read s", "read_s", ".2f"), ("ms/query", "per_query_ms", ".3f"),
                  ("latency ms", "latency_ms", ".2f"), _RSS]),
    "edit_rss": (lambda r, rec: "Edit run (tiny config: 32², quarter-width VGG19, feature "
                 "neighbours, 1 edit x 2 faces, probe off; disk = pool:1 search)",
                 [("N", "n", ""), ("bank", "bank", ""), _RSS, ("run s", "seconds", ".1f"),
                  ("build s", "build_s", ".1f")]),
}


def print_tables(record: dict) -> None:
  for section, (title, columns) in TABLES.items():
    if record[section]:
      _table(title(record[section][0], record), columns, record[section])
  r = record["reverse_maps"]
  if r:
    print(f"\nReverse maps ({r['iterations']} L-BFGS-B iterations, {r['image_size']}², "
          f"{r['devices']} devices): per image {r['b1_one_device_per_image_s']:.3f} s at B=1 "
          f"on one device, {r['b8_one_device_per_image_s']:.3f} s at B=8 on one device, "
          f"{r['b8_sharded_per_image_s']:.3f} s at B=8 split over the mesh")
  print(f"\nload average before/after: {record['load_average']} / "
        f"{record['load_average_after']}")


if __name__ == "__main__":
  cli.run_main(main)
