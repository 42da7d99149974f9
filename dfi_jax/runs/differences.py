"""The neighbours' mean pixel difference of every item (mean target − mean source: the
attribute's own pixel signature, in the bank's pixel frame) and what an edit run reads from it:
each item's luminance resolution (`luma_flags`, `where.detail_share`), whether it draws colour
(`colour_flags`, `where.chroma_share`) and, with `where_pixels`,
its pixel mask (`pixel_where`, `where.pixel_mask`), which `kit.where_masks` multiplies into
the where mask."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from dfi_jax.dfi import feature_bank
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.dfi import where as where_lib


class Differences(NamedTuple):
  """Every item's neighbours' mean pixel difference, mean target − mean source (a combined
  edit's: the sum of its parts'; the attribute's own pixel signature), edit-major: item j's is
  `by_key[keys[j]]`, `[S, S, 3]` float32; items with the same neighbours (all generated test
  faces lacking the same attributes) share one."""
  keys: list
  by_key: dict


def of(nb: feature_bank.Neighbourhood, edit_parts: Sequence[Sequence[neighbours_lib.Edit]],
       bank_images) -> Differences:
  """The `Differences` of E edits, each given as the single edits it adds (`kit.parts`), under
  the neighbours `nb` found. `bank_images`: the bank's images (`common.ReadOnce` reads each
  row once)."""
  means: dict = {}

  def mean(rows: tuple) -> np.ndarray:
    if rows not in means:
      means[rows] = bank_images[np.asarray(rows)].mean(axis=0)
    return means[rows]

  rows = lambda a: tuple(np.asarray(a).tolist())  # noqa: E731
  keys = [tuple((rows(nb.sets[p.name].source[i]), rows(nb.sets[p.name].target[i]))
                for p in singles)
          for singles in edit_parts for i in range(len(next(iter(nb.sets.values())).source))]
  by_key = {key: np.asarray(sum(mean(target) - mean(source) for source, target in key),
                            np.float32) for key in dict.fromkeys(keys)}
  return Differences(keys, by_key)


def needed(config) -> bool:
  """Whether a run reads the differences: per-edit luminance (luma_scale > 1), per-edit colour
  (colour_share > 0) or pixel masks."""
  return (config.get("luma_scale", 1) > 1 or config.get("colour_share", 0) > 0
          or config.get("where_pixels", False))


def _per_item(differences: Differences, value) -> np.ndarray:
  """`value(d)` of each distinct difference, once, stacked per item (edit-major)."""
  by_key = {key: value(d) for key, d in differences.by_key.items()}
  return np.stack([np.asarray(by_key[key], np.float32) for key in differences.keys])


def luma_flags(config, differences: Differences | None) -> np.ndarray | None:
  """`[E·B]` float32 each item's luminance flag (edit-major; `where.change`'s `fine`): 1 where
  its neighbours' mean pixel difference keeps at least `config.luma_detail` of its luminance
  energy finer than `config.luma_scale` pixels (`where.detail_share`), else 0. None when
  luma_scale is 1."""
  scale = config.get("luma_scale", 1)
  if scale <= 1:
    return None
  return _per_item(differences, lambda d: where_lib.detail_share(d, scale)
                   >= config.get("luma_detail", 0.0))


def colour_flags(config, differences: Differences | None,
                 fine: np.ndarray | None) -> np.ndarray | None:
  """`[E·B]` float32 each item's colour flag (edit-major; `where.change`'s `colour`): 0 (the
  change is luminance only) where its neighbours' mean pixel difference keeps less than
  `config.colour_share` of its energy in chroma (`where.chroma_share`) and its luminance is
  per pixel (`fine`, the items' `luma_flags`: a thin shape, not a smooth change of tone), else
  1. None when colour_share is 0."""
  share = config.get("colour_share", 0)
  if share <= 0:
    return None
  flags = _per_item(differences, lambda d: where_lib.chroma_share(d) >= share)
  return flags if fine is None else np.maximum(flags, 1 - fine)


def pixel_where(config, differences: Differences | None, fine: np.ndarray | None,
                own_photos: bool = False) -> np.ndarray | None:
  """`[E·B, S, S]` float32 each item's pixel mask (`where.pixel_mask` of its neighbours' mean
  pixel difference, ramped from `where_pixel_low` to `where_pixel_high`; ones for an item whose
  luminance is coarse, `fine` (the items' `luma_flags`) 0: a smooth change of tone spreads thin
  and a mask cut from its maximum would keep only its strongest part), or None when
  `where_pixels` is off or the test images are own photos (`own_photos`: a photo's face matches
  the bank's pixel frame only as far as its landmark fit does, and a thin attribute's mask a few
  pixels off misses it)."""
  if not config.get("where_pixels", False) or own_photos:
    return None
  masks = _per_item(differences, lambda d: where_lib.pixel_mask(
      d, config.where_pixel_sigma, config.where_pixel_low, config.where_pixel_high))
  return masks if fine is None else np.where(fine[:, None, None] > 0, masks, np.float32(1))
