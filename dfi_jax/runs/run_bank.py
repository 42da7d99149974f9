"""The bank of a run, from its config: what the run expects of a bank on disk
(`--config.bank_dir`), the bank's images (`image_stream`, streamed a range at a time where a
reader is registered in `STREAMS`), and the bank itself (`load`).

`dfi.feature_bank` takes plain arguments and raises `BankError`; `runs.kit` words that error
for the flag (`kit.bank_dir_errors`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from dfi_jax.data import bank_cache
from dfi_jax.data import banks
from dfi_jax.data import sources
from dfi_jax.data.datasets import common
from dfi_jax.dfi import bank as bank_lib
from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import features as features_lib


# Streaming readers by `config.data` (a dataset could add one reading array_record ranges).
# Without one, `image_stream` falls back to `banks.load_bank`.
STREAMS: dict[str, Callable[..., bank_lib.ImageStream]] = {
    "synthetic": lambda c: bank_lib.synthetic_stream(c.bank_size, c.image_size, c.bank_seed)}


def image_stream(config) -> bank_lib.ImageStream:
  """The bank images of `config.data`, streamed when a reader is registered in `STREAMS`;
  otherwise read whole by `banks.load_bank` and sliced (memory then grows with the data)."""
  if config.data in STREAMS:
    return STREAMS[config.data](config)
  bank = banks.load_bank(config)
  group = bank.group

  def read(a, b):
    return bank_lib.Rows(bank.images[a:b], bank.attributes[a:b], bank.names[a:b],
                         None if group is None else group[a:b])

  return bank_lib.ImageStream(len(bank.images), tuple(bank.attribute_names), tuple(bank.edits),
                              read, dict(data=config.data, image_size=config.image_size,
                                         bank_size=len(bank.images)), group is not None)


def expected(config, network=None, spec: features_lib.FeatureSpec | None = None
             ) -> feature_bank.Expected:
  """What `config`'s run expects of a bank: the data it was built from (as `bank.build` records
  it) and the taps; given the network (`runs.kit.Network`) and its φ layout, also the weights
  file, pooling, preprocessing and tap shapes."""
  stream = image_stream(config)
  weights = None if network is None else {
      k: v for k, v in feature_bank.weights_record(network).items() if k != "description"}
  return feature_bank.Expected(stream.description, list(config.taps), weights, spec)


def read_manifest(config) -> dict | None:
  """`config.bank_dir`'s manifest (None when no bank_dir is set), checked as far as it can be
  without the network; a bad one raises `feature_bank.BankError`."""
  bank_dir = config.get("bank_dir", "")
  return feature_bank.read_manifest(bank_dir, expected(config)) if bank_dir else None


def lazy_images(config, num_images: int):
  """The bank images of `config.data`, read one at a time when indexed."""
  if config.data in STREAMS:
    stream = STREAMS[config.data](config)
    return common.LazyImages(num_images, config.image_size,
                             lambda i: stream.read(i, i + 1).images[0])
  return banks.load_bank(config).images  # dataset banks read their images lazily


def load(config, network, spec: features_lib.FeatureSpec,
         phi_of_images: Callable[[np.ndarray], np.ndarray]
         ) -> tuple[sources.Bank, feature_bank.FeatureBank]:
  """The run's bank: attributes, names and (lazy) images, and φ — from `config.bank_dir`,
  checked against this run's network (`runs.kit.Network`), or computed for the rows read and
  kept (`phi_rows`). A bank that does not fit the run raises BankError."""
  if read_manifest(config) is None:
    data = banks.load_bank(config)
    rows = phi_rows(config, network, data.images, phi_of_images, spec.dim)
    return data, feature_bank.kept(rows, len(data.images))
  disk = feature_bank.open_checked(config.bank_dir, expected(config, network, spec))
  images = lazy_images(config, disk.num_images)
  if len(images) != disk.num_images:
    raise feature_bank.BankError(f"{disk.num_images} images, the data has {len(images)}; "
                                 "rebuild the bank")
  data = sources.Bank(images, disk.attributes, disk.attribute_names, disk.names, disk.edits,
                      disk.group)
  return data, feature_bank.on_disk(disk)


def phi_rows(config, network, images, phi_of_images: Callable[[np.ndarray], np.ndarray],
             dim: int) -> bank_cache.PhiRows:
  """φ of the bank's rows as `kept` reads them: for generated faces, cached on disk under the
  key of everything φ depends on (the generator, image size, the weights file's sha256,
  pooling, preprocessing, taps), each face named by its seed."""
  folder = ids = None
  if config.data == "synthetic":
    weights = {k: v for k, v in feature_bank.weights_record(network).items() if k != "description"}
    folder = bank_cache.cache_root() / ("phi-" + bank_cache.key(
        generator=bank_cache.generator_version(), image_size=config.image_size,
        weights=weights, taps=list(config.taps), dim=dim))
    ids = lambda rows: np.asarray(rows, np.int64) + config.bank_seed  # noqa: E731
  return bank_cache.PhiRows(images, phi_of_images, dim, ids, folder)
