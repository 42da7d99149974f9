"""Real datasets: LFW with Kumar et al.'s attributes and CelebA (through tensorflow-datasets),
and folders of images with a CSV. Importing this package registers their bank loaders in
`sources.BANKS` under `config.data` = "lfw", "celeb_a" and "folder"; tensorflow-datasets is
imported only when a bank is loaded or a dataset prepared.
"""

from dfi_jax.data import sources
from dfi_jax.data.datasets import celeb_a
from dfi_jax.data.datasets import folder
from dfi_jax.data.datasets import lfw
from dfi_jax.data.datasets.common import DatasetError

sources.BANKS.setdefault("lfw", lfw.lfw_bank)
sources.BANKS.setdefault("celeb_a", celeb_a.celeb_a_bank)
sources.BANKS.setdefault("folder", folder.folder_bank)

__all__ = ["DatasetError", "celeb_a", "folder", "lfw"]
