"""Every bank a run can read, by `config.data`: one table, filled here and nowhere else."""

from __future__ import annotations

from typing import Callable, Mapping

from dfi_jax.data import faces
from dfi_jax.data import sources
from dfi_jax.data.datasets import celeb_a
from dfi_jax.data.datasets import common
from dfi_jax.data.datasets import folder
from dfi_jax.data.datasets import lfw

def synthetic_bank(config) -> sources.Bank:
  """Generated faces with seeds [bank_seed, bank_seed + bank_size): the labels from
  `sources.synthetic_labels` (cached), each image rendered when it is read
  (`common.LazyImages`: a run renders only the faces it uses, ~5 ms each at 64²)."""
  first, size = config.bank_seed, config.image_size
  labels = sources.synthetic_labels(config)
  images = common.LazyImages(
      config.bank_size, size, lambda i: faces.generate([first + i], size)[0][0])
  return sources.Bank(images, labels["attributes"], faces.ATTRIBUTES,
                      [f"face{s}" for s in range(first, first + config.bank_size)],
                      tuple(sources.Edit(a, a) for a in faces.ATTRIBUTES))


# config.data -> loader(config) -> sources.Bank. The dataset loaders import tensorflow-datasets
# only when called.
LOADERS: Mapping[str, Callable[..., sources.Bank]] = {
    "synthetic": synthetic_bank,
    "lfw": lfw.lfw_bank,
    "celeb_a": celeb_a.celeb_a_bank,
    "folder": folder.folder_bank,
}


def load_bank(config, loaders: Mapping[str, Callable[..., sources.Bank]] = LOADERS
              ) -> sources.Bank:
  """The bank of `config.data`, read by its entry in `loaders`."""
  if config.data not in loaders:
    raise ValueError(f"--config.data={config.data!r}: expected one of {sorted(loaders)}")
  return loaders[config.data](config)
