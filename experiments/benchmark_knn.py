"""Scaling benchmark: sharded KNN vs bank size, bank build speed and memory, batched reverse maps.

  nice -n 10 python -m experiments.benchmark_knn [--json_out=runs/benchmark_knn.json]
  python -m experiments.benchmark_knn --sizes=1000,10000 --build_sizes=200 --noreverse_maps

Each measurement runs in its own child process, so devices and peak memory are its own:
  * KNN (`sharding.make_knn`): a `[N, dim]` float32 bank of search features (default dim 256,
    e.g. `--search=projection:256` at build time), B queries, top-K source and target sets, on 1
    device and on 8 (`XLA_FLAGS=--xla_force_host_platform_device_count=8`; on CPU the 8 "devices"
    share the host's cores, so this shows the partitioning works, not a speed-up).
  * Bank build (`bank.build` of synthetic 32² faces, width-1/16 VGG19, default taps): images/s
    (rendering included, and φ alone), peak RSS — which should not grow with the image count.
  * Reverse maps: per-image time at B=1 on one device vs B=8 split over 8 devices.
Prints a table and writes JSON.
"""

import json
import os
import resource
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
_WORKER = flags.DEFINE_string("worker", "", "Internal: knn | build:N | reverse.")


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _tiny_params(width, last):
  from dfi_jax import weights as weights_lib
  return weights_lib.init_random(0, width, last)


def knn_worker() -> list[dict]:
  import jax
  import numpy as np
  from dfi_jax import sharding
  mesh = sharding.make_mesh()
  rng = np.random.default_rng(0)
  b, k, d = _QUERIES.value, _K.value, _DIM.value
  knn = sharding.make_knn(mesh, k)
  rows = []
  for n in map(int, _SIZES.value):
    host = rng.standard_normal((n, d), dtype=np.float32)
    bank = sharding.shard_rows(host, mesh)
    del host
    source = rng.random(n) < 0.5
    queries = rng.standard_normal((b, d), dtype=np.float32)
    call = lambda: jax.block_until_ready(
        sharding.neighbours(knn, mesh, bank, queries, source, ~source))
    t = time.perf_counter()
    call()
    first = time.perf_counter() - t
    times = []
    for _ in range(_REPEATS.value):
      t = time.perf_counter()
      call()
      times.append(time.perf_counter() - t)
    latency = float(np.median(times))
    rows.append(dict(devices=mesh.size, n=n, dim=d, queries=b, k=k, first_call_s=first,
                     latency_ms=latency * 1e3, queries_per_s=b / latency,
                     rows_scanned_per_s=n * b / latency, peak_rss_mb=_peak_rss_mb()))
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    del bank
  return rows


def build_worker(n: int) -> dict:
  import jax
  import numpy as np
  from dfi_jax import bank as bank_lib
  from dfi_jax import features as features_lib
  from dfi_jax import model as model_lib
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
  from dfi_jax import faces
  from dfi_jax import features as features_lib
  from dfi_jax import model as model_lib
  from dfi_jax import reconstruct
  from dfi_jax import sharding
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


def _child(worker: str, devices: int) -> object:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={devices}").strip()
  args = [sys.executable, "-m", "experiments.benchmark_knn", f"--worker={worker}",
          f"--sizes={','.join(_SIZES.value)}", f"--dim={_DIM.value}",
          f"--queries={_QUERIES.value}", f"--k={_K.value}", f"--repeats={_REPEATS.value}"]
  result = subprocess.run(args, env=env, stdout=subprocess.PIPE, text=True)
  if result.returncode != 0:
    raise RuntimeError(f"benchmark worker {worker} on {devices} device(s) failed")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  if _WORKER.value:
    kind, _, n = _WORKER.value.partition(":")
    out = {"knn": knn_worker, "reverse": reverse_worker}.get(kind)
    print(json.dumps(out() if out else build_worker(int(n))), flush=True)
    return
  import jax
  record = dict(knn=[], build=[], reverse_maps=None, cpu_count=os.cpu_count(),
                jax=jax.__version__, load_average=os.getloadavg())
  for devices in map(int, _DEVICES.value):
    record["knn"] += _child("knn", devices)
  for n in _BUILD_SIZES.value:
    record["build"].append(_child(f"build:{n}", 1))
  if _REVERSE.value:
    record["reverse_maps"] = _child("reverse", 8)
  record["load_average_after"] = os.getloadavg()
  print_tables(record)
  Path(_JSON.value).parent.mkdir(parents=True, exist_ok=True)
  Path(_JSON.value).write_text(json.dumps(record, indent=2) + "\n")
  print(f"wrote {_JSON.value}")


def print_tables(record: dict) -> None:
  if record["knn"]:
    r0 = record["knn"][0]
    print(f"\nKNN (sharding.make_knn): d={r0['dim']} float32 search features, B={r0['queries']} "
          f"queries, K={r0['k']} source + {r0['k']} target; CPU, {record['cpu_count']} cores")
    print(f"{'devices':>7} {'N':>9} {'latency ms':>11} {'queries/s':>10} {'rows·q/s':>10} "
          f"{'compile+1st s':>13} {'peak RSS MB':>11}")
    for r in record["knn"]:
      print(f"{r['devices']:>7} {r['n']:>9} {r['latency_ms']:>11.2f} {r['queries_per_s']:>10.1f} "
            f"{r['rows_scanned_per_s']:>10.3g} {r['first_call_s']:>13.2f} "
            f"{r['peak_rss_mb']:>11.0f}")
  if record["build"]:
    r0 = record["build"][0]
    print(f"\nBank build (bank.build): synthetic {r0['image_size']}² faces, width-1/16 VGG19, "
          f"D={r0['feature_dim']} float32, pool:1 search, shards of 256")
    print(f"{'images':>7} {'s':>8} {'images/s':>9} {'φ-only images/s':>16} {'disk MB':>8} "
          f"{'RSS at 10% MB':>13} {'peak RSS MB':>11}")
    for r in record["build"]:
      print(f"{r['images']:>7} {r['seconds']:>8.1f} {r['images_per_s']:>9.1f} "
            f"{r['phi_images_per_s']:>16.1f} {r['disk_mb']:>8.1f} {r['rss_at_10pct_mb']:>13.0f} "
            f"{r['peak_rss_mb']:>11.0f}")
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
