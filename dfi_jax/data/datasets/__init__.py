"""Real datasets: LFW with Kumar et al.'s attributes and CelebA (through tensorflow-datasets),
and folders of images with a CSV. Their bank loaders are listed in
`dfi_jax/data/banks.py` under `config.data` = "lfw", "celeb_a" and "folder"; tensorflow-datasets
is imported only when a bank is loaded or a dataset prepared.
"""

from dfi_jax.data.datasets import celeb_a
from dfi_jax.data.datasets import folder
from dfi_jax.data.datasets import lfw
from dfi_jax.data.datasets.common import DatasetError

__all__ = ["DatasetError", "celeb_a", "folder", "lfw"]
