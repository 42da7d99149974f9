"""Where a run's bank and test images come from.

A bank is a set of images with binary attributes and the dataset's named edits; test images are
either held-out generated faces (with counterfactual ground truth), bank images named in the
config (excluded from their own neighbours, as the official code does), or the user's photos.
Which loader reads which `config.data` is the table in `banks.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from dfi_jax.data import bank_cache
from dfi_jax.data import faces
from dfi_jax.data import fitting
from dfi_jax.data import image_io


class Edit(NamedTuple):
  """An edit from attribute `source_attribute` (None: any image lacking `target_attribute`)
  to `target_attribute`. The official rule: source = has a and lacks b, target = has b and
  lacks a, for a = `source_attribute`, b = `target_attribute`."""
  name: str
  target_attribute: str
  source_attribute: str | None = None


class Bank(NamedTuple):
  images: np.ndarray  # [N, S, S, 3] float32 in [0, 1]
  attributes: np.ndarray  # [N, A] bool
  attribute_names: tuple[str, ...]
  names: list[str]  # [N] image names
  edits: tuple[Edit, ...]  # the dataset's named edits
  group: np.ndarray | None = None  # [N] int: neighbours only within the query's group


class TestImages(NamedTuple):
  names: list[str]
  images: np.ndarray  # [B, S, S, 3] float32: what the network sees
  attributes: np.ndarray | None = None  # [B, A] bool, when known
  bank_index: np.ndarray | None = None  # [B] int32 index in the bank, or -1
  group: np.ndarray | None = None  # [B] int
  counterfactuals: dict | None = None  # edit name -> [B, S, S, 3] (synthetic only)
  masks: dict | None = None  # edit name -> [B, S, S] bool (synthetic only)
  originals: list[np.ndarray] | None = None  # own photos at full size
  placements: list[fitting.Placement] | None = None  # own photos fitted whole (align=none)
  faces: list | None = None  # own photos aligned by face: per row, a photos.FaceAlignment


def synthetic_key(config) -> dict:
  """What determines the generated bank (its cache key, `bank_cache`)."""
  return dict(data="synthetic", generator=bank_cache.generator_version(),
              image_size=config.image_size, bank_seed=config.bank_seed,
              bank_size=config.bank_size)


def synthetic_labels(config) -> dict[str, np.ndarray]:
  """The generated bank's `attributes` (`[N, 6]` bool) and `mean_landmarks` (`[L, 2]` float64
  at `image_size`²): drawn from every seed once (~3 s for 10,000), then read from the cache."""
  size = config.image_size

  def compute():
    params = [faces.sample_face(s) for s in range(config.bank_seed,
                                                  config.bank_seed + config.bank_size)]
    points = np.stack([faces.layout_landmarks(p, size) for p in params]).astype(np.float64)
    return dict(attributes=np.asarray([p.attributes for p in params], bool).reshape(-1, 6),
                mean_landmarks=points.mean(0))

  return bank_cache.cached("labels", compute, **synthetic_key(config))


def test_face_params(config) -> list[faces.FaceParams]:
  """Held-out faces (seeds >= test_seed, never in the bank) lacking all six attributes, so
  every edit adds its attribute and has a counterfactual."""
  chosen, seed = [], config.test_seed
  while len(chosen) < config.num_test:
    p = faces.sample_face(seed)
    if not any(p.attributes):
      chosen.append(p)
    seed += 1
  return chosen


def synthetic_tests(config, edits: Sequence[Edit]) -> TestImages:
  size = config.image_size
  params = test_face_params(config)
  rendered = [faces.render(p, size) for p in params]
  cfs = {e.name: np.stack([faces.counterfactual(p, e.target_attribute, size).image
                           for p in params]) for e in edits}
  masks = {e.name: np.stack([r.masks[e.target_attribute] for r in rendered]) for e in edits}
  return TestImages(
      names=[f"face{p.seed}" for p in params],
      images=np.stack([r.image for r in rendered]),
      attributes=np.stack([np.asarray(p.attributes, bool) for p in params]),
      counterfactuals=cfs, masks=masks)


def bank_tests(bank: Bank, names: Sequence[str]) -> TestImages:
  """Test images picked from the bank by name (excluded from their own neighbour sets)."""
  index = {n: i for i, n in enumerate(bank.names)}
  missing = [n for n in names if n not in index]
  if missing:
    raise ValueError(f"--config.test_names: {missing} are not in the bank "
                     f"(e.g. {bank.names[:3]}); use --inputs for images outside it")
  idx = np.asarray([index[n] for n in names], np.int32)
  return TestImages(list(names), bank.images[idx], bank.attributes[idx], idx,
                    None if bank.group is None else bank.group[idx])


MAX_STEM = 100  # output names add ~40 characters; file systems allow 255 bytes


def photo_names(paths: Sequence[str]) -> list[str]:
  """Output stems for the user's files, distinct by construction.

  Each file keeps its stem (cut to `MAX_STEM` characters); a repeat gets `_2`, `_3`, … — the
  first that is neither taken nor another file's own stem, compared case-insensitively (as
  macOS and Windows compare names) — so a generated name never takes a real file's.
  """
  stems = [(Path(p).stem or "image")[:MAX_STEM] for p in paths]
  own = {s.casefold() for s in stems}
  names, used = [], set()
  for stem in stems:
    name, n = stem, 1
    while name.casefold() in used or (name != stem and name.casefold() in own):
      n += 1
      name = f"{stem}_{n}"
    used.add(name.casefold())
    names.append(name)
  return names


def photo_tests(size: int, paths: Sequence[str]) -> TestImages:
  """The user's images, each fitted into a `size`² square (aspect kept, mean-colour padding)."""
  squares, originals, placements = [], [], []
  for path in paths:
    image = image_io.load_image(path)
    square, placement = fitting.fit_square(image, size)
    squares.append(square)
    originals.append(image)
    placements.append(placement)
  return TestImages(photo_names(paths), np.stack(squares), originals=originals,
                    placements=placements)


def load_tests(config, bank: Bank, edits: Sequence[Edit]) -> TestImages:
  """Held-out generated faces on synthetic data, else the bank images `config.test_names`."""
  if config.data == "synthetic":
    return synthetic_tests(config, edits)
  return bank_tests(bank, config.test_names)
