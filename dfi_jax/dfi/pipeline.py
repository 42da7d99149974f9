"""The DFI sequence, once: φ(x) → neighbours → w → scale → targets φ(x) + δ·w → reverse maps.

Every run and probe edits through `edit` (= `plan`, then `reverse_maps`; the edit run calls
`plan` and iterates `finished_items` itself, to save each image as it finishes); they differ
only in the arguments:

* where w comes from (`directions`): the sharded feature bank's neighbours (`feature_bank`),
  neighbours warped onto each test face (`align`), inpainting's masked neighbours, warped
  high-resolution candidates, a probe's oracle;
* how one batch is solved (`solve`): the compiled `reconstruct.ReverseMap` (default), the same
  split over devices (`sharding.reverse_maps`), or a probe's SciPy reference;
* what is already done (`kept`: a resumed run's items) and where the first δ starts
  (`first_start`: fast mode's decoder).

Items are edit-major: item `j` is test image `j % B` under direction `j // B`. The δ sweep is a
chain: the first δ starts from x, each next δ from the previous δ's result; an item whose
previous δ failed (non-finite loss) is not run again.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import attribute_vector
from dfi_jax.dfi import reconstruct
from dfi_jax.dfi import where as where_lib

# `(targets [b, D], z0 [b, H, W, 3], iterations, progress) -> reconstruct.ReverseMapResult`
Solve = Callable[..., reconstruct.ReverseMapResult]


class Pipeline(NamedTuple):
  """A network's φ and its reverse map at one image size."""
  phi: Callable[[dict, jax.Array], jax.Array]  # `features.make_phi`: [B, S, S, 3] -> [B, D]
  params: dict
  spec: features_lib.FeatureSpec
  reverse_map: reconstruct.ReverseMap


def make(net, params, image_size: int, config: reconstruct.ReverseMapConfig) -> Pipeline:
  """φ and the (process-wide cached) compiled reverse map of `net` for `image_size`² images."""
  spec = features_lib.feature_spec(net, params, (image_size, image_size))
  return Pipeline(features_lib.make_phi(net), params, spec,
                  reconstruct.cached(net, spec, config))


class Edits(NamedTuple):
  """Reverse-map results of every (δ, item)."""
  images: np.ndarray  # [S, n, H, W, 3] float32 in [0, 1]
  loss: np.ndarray  # [S, n] float32, NaN where not run
  finite: np.ndarray  # [S, n] bool: done (now or kept) with a finite loss
  evaluations: np.ndarray  # [S, n] int64 objective evaluations


def empty(num_deltas: int, n: int, image_shape: Sequence[int]) -> Edits:
  """Nothing done yet: `[num_deltas, n]` items of `image_shape` (`(H, W, 3)`)."""
  shape = (num_deltas, n)
  return Edits(np.zeros(shape + tuple(image_shape), np.float32),
               np.full(shape, np.nan, np.float32), np.zeros(shape, bool),
               np.zeros(shape, np.int64))


def targets(phi_x: jax.Array, directions: Sequence[jax.Array], scaling: str,
            deltas: Sequence[float]) -> jax.Array:
  """`[B, D]` φ(x) and E unscaled `[B, D]` directions -> `[S, E·B, D]` targets (edit-major):
  each w scaled (`attribute_vector.scale_vector`), then φ(x) + δ_s·w for each δ."""
  phi_x = jnp.asarray(phi_x)
  return jnp.concatenate([
      attribute_vector.edit_targets(
          phi_x, attribute_vector.scale_vector(jnp.asarray(w), scaling), deltas)
      for w in directions], axis=1)


def finished_items(solve: Solve, targets: jax.Array, x: np.ndarray, iterations: Sequence[int],
                   batch_size: int, out: Edits, *, rows: Sequence[int] | None = None,
                   first_start: Callable | None = None, where: np.ndarray | None = None,
                   fine: np.ndarray | None = None, colour: np.ndarray | None = None,
                   progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, int]]:
  """The δ chain over `[S, n, D]` targets from `[n, H, W, 3]` inputs x, filling `out` in place.

  Yields `(s, j)` for each item finished here with a finite loss, as soon as its batch is done
  (`out.images[s, j]` holds it), so a caller can save it before the next batch runs.

  Args:
    solve: one batch's reverse map (see `Solve`).
    iterations: per δ (the first δ's, then each next one's).
    batch_size: items per `solve` call.
    out: `[S, n]` results; items it marks `finite` (a resumed run's) are not recomputed.
    rows: the items this process maps (default all; a host's share on many hosts).
    first_start: `(targets [b, D], z0 [b, H, W, 3], rows [b]) -> z0`: the first δ's start.
    where: `[n, H, W]` each item's where mask, passed to `solve` as z0's 4th channel (None:
      z0 has 3 channels, or with `fine` a mask of ones).
    fine: `[n]` each item's luminance flag, passed as z0's 5th channel (1 = per pixel, 0 = at
      1/`luma_scale`: `where.change`; None: no 5th channel).
    colour: `[n]` each item's colour flag, passed as z0's 6th channel (1 = with chroma, 0 =
      luminance only: `where.change`; None: no 6th channel).
    progress: called with iterations × images done (skipped items count as done).
  """
  n = len(x)
  rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
  tick = progress or (lambda k: None)
  for s in range(len(iterations)):
    for b in range(0, len(rows), batch_size):
      sl = rows[b:b + batch_size]
      if out.finite[s, sl].all() or (s > 0 and not out.finite[s - 1, sl].all()):
        tick(iterations[s] * len(sl))  # done, or its previous δ failed: this one fails too
        continue
      z0 = x[sl] if s == 0 else out.images[s - 1, sl]
      if s == 0 and first_start is not None:
        z0 = first_start(targets[s, sl], z0, sl)
        if where is not None:  # the start's change too stays inside the mask
          z0 = x[sl] + where[sl, ..., None] * (z0 - x[sl])
      if where is not None or fine is not None or colour is not None:
        z0 = extra_channels(z0, *(None if a is None else a[sl] for a in (where, fine, colour)))
      res = solve(targets[s, sl], z0, iterations[s],
                  lambda k, m=len(sl): tick(k * m))
      out.images[s, sl], out.loss[s, sl] = res.images, res.loss
      out.finite[s, sl], out.evaluations[s, sl] = res.finite, res.evaluations
      yield from ((s, int(j)) for j in sl if out.finite[s, j])


def extra_channels(z0: np.ndarray, where: np.ndarray | None, fine: np.ndarray | None,
                   colour: np.ndarray | None = None) -> np.ndarray:
  """`[b, H, W, 3]` starts with their `[b, H, W]` where masks (None: ones) as a 4th channel,
  their `[b]` luminance flags as a 5th (None: zeros, or no 5th channel when colour is None too)
  and, when given, their `[b]` colour flags as a 6th: `[b, H, W, 4…6]` float32."""
  b, h, w, _ = z0.shape
  flag = lambda f: np.broadcast_to(np.asarray(f, np.float32).reshape(-1, 1, 1, 1),  # noqa: E731
                                   (b, h, w, 1))
  parts = [np.asarray(z0, np.float32),
           np.ones((b, h, w, 1), np.float32) if where is None else where[..., None]]
  if fine is not None or colour is not None:
    parts.append(flag(0.0 if fine is None else fine))
  if colour is not None:
    parts.append(flag(colour))
  return np.concatenate(parts, axis=-1)


def reverse_maps(solve: Solve, targets: jax.Array, x: np.ndarray, iterations: Sequence[int],
                 batch_size: int, *, kept: Edits | None = None,
                 on_finished: Callable[[int, int, Edits], None] | None = None, **chain) -> Edits:
  """`finished_items` run to the end: every item's result (kept, computed here, or untouched
  where another process maps it). `kept`: results already done (default none);
  `on_finished`: `(s, j, edits)`, called for each item finished here with a finite loss;
  `chain`: `finished_items`'s rows, first_start, where, progress."""
  out = kept if kept is not None else empty(len(iterations), len(x), x.shape[1:])
  for s, j in finished_items(solve, targets, x, iterations, batch_size, out, **chain):
    if on_finished is not None:
      on_finished(s, j, out)
  return out


class Edited(NamedTuple):
  edits: Edits  # [S, E·B] items, edit-major
  phi_x: np.ndarray  # [B, D] φ of the inputs
  seconds: dict  # directions_s (φ(x), neighbours, w), reverse_map_s
  where: np.ndarray | None = None  # [E·B, H, W] where masks (None: off)


class Plan(NamedTuple):
  """What the reverse maps of one `edit` start from."""
  targets: jax.Array  # [S, E·B, D] φ(x) + δ·w, edit-major
  x: np.ndarray  # [E·B, S, S, 3] each item's input
  where: np.ndarray | None  # [E·B, S, S] where masks (None: off)
  phi_x: np.ndarray  # [B, D] φ of the inputs
  seconds: dict  # directions_s (φ(x), neighbours, w)


def plan(pipe: Pipeline, x: np.ndarray, directions: Callable[[np.ndarray], Sequence],
         deltas: Sequence[float], *, scaling: str, feature_batch: int = 32,
         phi_x: np.ndarray | None = None) -> Plan:
  """φ(x) of `[B, S, S, 3]` images x (unless given), their E directions w, the `[S, E·B, D]`
  targets and the where masks: everything before the reverse maps."""
  t0 = time.perf_counter()
  if phi_x is None:
    phi_x = features_lib.compute_features(pipe.phi, pipe.params, x, feature_batch)
  ws = list(directions(phi_x))
  goal = targets(phi_x, ws, scaling, deltas)
  where = where_masks(pipe, ws, x.shape[1:3])
  return Plan(goal, np.tile(x, (len(ws), 1, 1, 1)), where, np.asarray(phi_x),
              dict(directions_s=time.perf_counter() - t0))


def default_solve(pipe: Pipeline) -> Solve:
  """One batch through the pipeline's compiled reverse map."""
  return lambda t, z0, it, progress=None: pipe.reverse_map(pipe.params, t, z0, it, progress)


def start_from(first_start: Callable | None, phi_x: np.ndarray) -> Callable | None:
  """`first_start(targets, z0, φ(x) [b, D])` as `finished_items`' `(targets, z0, rows)`."""
  if first_start is None:
    return None
  phi_x = np.asarray(phi_x)
  return lambda t, z0, sl: first_start(t, z0, phi_x[sl % len(phi_x)])


def edit(pipe: Pipeline, x: np.ndarray, directions: Callable[[np.ndarray], Sequence],
         deltas: Sequence[float], iterations: Sequence[int], *, scaling: str, batch_size: int,
         feature_batch: int = 32, phi_x: np.ndarray | None = None, solve: Solve | None = None,
         first_start: Callable | None = None, **chain) -> Edited:
  """DFI on `[B, S, S, 3]` images x: the whole sequence (`plan`, then `reverse_maps`).

  A keyword-only builder: every setting after the δ sweep is named at the call.

  Args:
    pipe: from `make`.
    directions: `φ(x) [B, D] -> E unscaled w's, each [B, D]` (its neighbours and means).
    deltas, iterations: the δ sweep and each δ's iterations (same length).
    scaling: `attribute_vector.SCALINGS`.
    batch_size: items per `solve` call.
    phi_x: φ(x) when already computed (else computed here in batches of `feature_batch`).
    solve: one batch's reverse map (default `pipe.reverse_map`).
    first_start: `(targets [b, D], z0 [b, S, S, 3], φ(x) [b, D]) -> z0` for the first δ.
    chain: `reverse_maps`'s rows, kept, on_finished, progress.

  Returns:
    `Edited`: results `[len(deltas), E·B]`, φ(x), and the seconds of each part.
  """
  if len(iterations) != len(deltas):
    raise ValueError(f"{len(deltas)} deltas but {len(iterations)} iteration counts")
  p = plan(pipe, x, directions, deltas, scaling=scaling, feature_batch=feature_batch,
           phi_x=phi_x)
  t0 = time.perf_counter()
  edits = reverse_maps(solve or default_solve(pipe), p.targets, p.x, iterations, batch_size,
                       first_start=start_from(first_start, p.phi_x), where=p.where, **chain)
  return Edited(edits, p.phi_x, dict(p.seconds, reverse_map_s=time.perf_counter() - t0),
                p.where)


def where_masks(pipe: Pipeline, ws: Sequence[jax.Array], image_shape: tuple[int, int]
                ) -> np.ndarray | None:
  """E `[B, D]` directions -> `[E·B, H, W]` where masks (edit-major) from the reverse map's
  `where` setting; None when it is off (the paper's global edit) or there is no compiled reverse
  map (a caller's own `solve`)."""
  config = getattr(getattr(pipe.reverse_map, "config", None), "where", None)
  if config is None or config.mode == "off":
    return None
  return np.concatenate([where_lib.mask(w, pipe.spec, tuple(image_shape), config) for w in ws])


def iterations_for(deltas: Sequence[float], first: int, next_: int) -> list[int]:
  """A run's iterations per δ: `first` for the first δ, `next_` for each next (warm-started)."""
  return [first] + [next_] * (len(deltas) - 1)
