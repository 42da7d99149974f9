"""A tiny feature bank for a run config, built in process as `experiments.build_bank` builds it."""

from dfi_jax.dfi import bank as bank_lib
from dfi_jax.runs import kit
from dfi_jax.runs import run_bank
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib


def build(config, path, search: str = "none", dtype: str = "float32", shard_size: int = 16,
          overwrite: bool = False):
  """`config`'s bank (its data, weights, taps and image size) in `path`; returns the network."""
  network = kit.load_network(config)
  size = config.image_size
  spec = features_lib.feature_spec(network.net, network.params, (size, size))
  report = bank_lib.build(path, run_bank.image_stream(config),
                          features_lib.make_phi(network.net), network.params, spec,
                          shard_size=shard_size, dtype=dtype, batch_size=config.feature_batch,
                          search=bank_lib.parse_search(search, config.seed),
                          weights=feature_bank.weights_record(network), overwrite=overwrite)
  assert report.complete
  return network
