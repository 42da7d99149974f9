"""Build a feature bank on disk: `python -m experiments.build_bank --bank_dir=DIR [--config=FILE]`.

  --config=experiments/configs/synthetic.py[:variant]   dataset, image size, weights and taps
  --shard_size=0 --dtype=float32|bfloat16               storage (0: ≈256 MB shards; a shard is
                                                        the resume granularity)
  --search=none|pool:P|projection:D                     a smaller reduction for neighbour search
  --distributed                                         jax.distributed.initialize (pods/clusters)

Rerunning the same command resumes an interrupted build; finished shards are not recomputed.
On many hosts run the same command on every host: host i builds shards i, i+H, i+2H, … with its
own devices, and process 0 writes the manifest. Example (tiny, a few seconds):

  python -m experiments.build_bank --bank_dir=runs/banks/tiny \\
      --config=experiments/configs/synthetic.py:tiny --shard_size=16
"""

import time
from pathlib import Path

import jax
from absl import flags
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import tqdm

from dfi_jax.dfi import bank as bank_lib
from dfi_jax.runs import kit
from dfi_jax.runs import run_bank
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib
from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from dfi_jax.dfi import sharding
from dfi_jax.runs import hosts as run_hosts
from experiments import cli

_CONFIG = cli.define_config_file(
    "experiments/configs/synthetic.py", "Config file (FILE or FILE:variant).")
_BANK_DIR = flags.DEFINE_string("bank_dir", None, "Bank directory (e.g. runs/banks/NAME).",
                                required=True)
_SHARD_SIZE = flags.DEFINE_integer("shard_size", 0, "Images per shard (0: ≈256 MB of φ).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", bank_lib.DTYPES, "On-disk dtype of φ.")
_SEARCH = flags.DEFINE_string("search", "none", "Search reduction: none, pool:P, projection:D.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Images per φ call (0: config.feature_batch).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a bank built with other settings.")
_DISTRIBUTED = cli.define_distributed_flags()


def local_phi(phi, params):
  """φ with each batch split over this host's devices (replicated params)."""
  mesh = sharding.make_mesh(devices=jax.local_devices())
  split = NamedSharding(mesh, P(sharding.DATA))
  params = jax.device_put(params, NamedSharding(mesh, P()))
  return (lambda _, images: phi(params, jax.device_put(images, split))), mesh.size


def kept() -> str:
  """What an interrupted build leaves, in words (for Ctrl-C's one line)."""
  shards = Path(_BANK_DIR.value or "-") / "shards"
  done = len(list(shards.glob("*.json"))) if shards.is_dir() else 0
  return (f"{done} finished shard(s) kept in {_BANK_DIR.value}; the same command resumes"
          if done else "no finished shard was kept")


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  cli.initialize_distributed(_DISTRIBUTED)
  if _SHARD_SIZE.value < 0 or _BATCH.value < 0:
    raise ValueError(f"--shard_size={_SHARD_SIZE.value}, --batch_size={_BATCH.value}: "
                     "expected integers >= 0 (0: automatic)")
  config = run_state.split_lists(_CONFIG.value)
  kit.validate(config)
  kit.check_inputs(config)
  search = bank_lib.parse_search(_SEARCH.value, seed=config.seed)
  lock = (workdir_lock.LOCK if jax.process_count() == 1
          else run_hosts.host_lock(jax.process_index()))
  with workdir_lock.locked(_BANK_DIR.value, "bank_dir", (bank_lib.MANIFEST,), lock) as bank_dir:
    build(config, bank_dir, search)


def build(config, bank_dir: Path, search: bank_lib.SearchReduction) -> None:
  """The bank of `config` in `bank_dir` (held by this process), with the flags' storage."""
  network = kit.load_network(config)
  size = config.image_size
  spec = features_lib.feature_spec(network.net, network.params, (size, size))
  phi, devices = local_phi(features_lib.make_phi(network.net), network.params)
  batch = _BATCH.value or config.feature_batch
  batch = -(-batch // devices) * devices  # a multiple of the local device count
  stream = run_bank.image_stream(config)
  weights = feature_bank.weights_record(network)
  bytes_per_image = spec.dim * (2 if _DTYPE.value == "bfloat16" else 4)
  shard_size = _SHARD_SIZE.value or int(min(4096, max(1, 256e6 // bytes_per_image)))
  writer = sharding.is_writer()
  if writer:
    print(f"bank {bank_dir}: {stream.num_images} images, φ {spec.dim} × {_DTYPE.value} "
          f"({bytes_per_image / 1e6:.2f} MB/image), "
          f"search {_SEARCH.value} (d={bank_lib.search_dim(search, spec)}), "
          f"shards of {shard_size}, "
          f"{jax.process_count()} host(s), {devices} local device(s)", flush=True)
  hosts = jax.process_count()
  mine = [min(shard_size, stream.num_images - i) for i in range(0, stream.num_images, shard_size)
          ][jax.process_index()::hosts]  # this host's shards: i % hosts == process_index
  t0 = time.perf_counter()
  with tqdm(total=sum(mine), desc="bank φ (this host)" if hosts > 1 else "bank φ", unit="img",
            disable=not writer) as bar:
    report = bank_lib.build(
        bank_dir, stream, phi, network.params, spec, shard_size=shard_size,
        dtype=_DTYPE.value, search=search, batch_size=batch, weights=weights,
        hosts=bank_lib.Hosts(jax.process_index(), hosts, sharding.barrier),
        overwrite=_OVERWRITE.value, progress=bar.update)
  seconds = time.perf_counter() - t0
  built = sum(min(shard_size, stream.num_images - i * shard_size) for i in report.built)
  if writer:
    print(f"{'complete' if report.complete else 'incomplete'}: built {len(report.built)} "
          f"shard(s) here ({built / max(seconds, 1e-9):.1f} images/s), resumed past "
          f"{len(report.skipped)}; manifest {bank_dir / bank_lib.MANIFEST}")
  if not report.complete:
    raise ValueError("the bank is incomplete (another host failed?); rerun the same command")


if __name__ == "__main__":
  cli.run_main(main, kept=kept)
