"""Where a bank's images come from, a range at a time (`ImageStream`)."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from dfi_jax.data import faces
from dfi_jax.data.sources import Edit


# ---------------------------------------------------------------------------------------
# Where the images come from, a range at a time.


class Rows(NamedTuple):
  """Images [start, stop) of a dataset."""
  images: np.ndarray  # [n, S, S, 3] float32 in [0, 1]
  attributes: np.ndarray  # [n, A] bool
  names: list[str]
  group: np.ndarray | None = None  # [n] int: neighbours only within the query's group


class ImageStream(NamedTuple):
  """A dataset read in ranges: `read(start, stop) -> Rows`. `description` identifies it in
  the manifest; `has_group`: rows carry a neighbour group."""
  num_images: int
  attribute_names: tuple[str, ...]
  edits: tuple[Edit, ...]
  read: Callable[[int, int], Rows]
  description: dict
  has_group: bool = False


def synthetic_stream(num_images: int, image_size: int, first_seed: int = 0) -> ImageStream:
  """Generated faces with seeds [first_seed, first_seed + num_images), rendered on demand."""
  def read(start, stop):
    seeds = range(first_seed + start, first_seed + stop)
    images, attributes = faces.generate(seeds, image_size)
    return Rows(images, attributes, [f"face{s}" for s in seeds])

  return ImageStream(num_images, tuple(faces.ATTRIBUTES),
                     tuple(Edit(a, a) for a in faces.ATTRIBUTES), read,
                     dict(data="synthetic", bank_size=num_images, bank_seed=first_seed,
                          image_size=image_size))
