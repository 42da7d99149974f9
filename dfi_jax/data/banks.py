"""Every bank a run can read, by `config.data`: one table, filled here and nowhere else."""

from __future__ import annotations

from typing import Callable, Mapping

from dfi_jax.data import sources
from dfi_jax.data.datasets import celeb_a
from dfi_jax.data.datasets import folder
from dfi_jax.data.datasets import lfw

# config.data -> loader(config) -> sources.Bank. The dataset loaders import tensorflow-datasets
# only when called.
LOADERS: Mapping[str, Callable[..., sources.Bank]] = {
    "synthetic": sources.synthetic_bank,
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
