"""Training and measuring the attribute judge (`judge.py`) on generated faces.

`train_and_save` is the whole recipe behind `python -m experiments.train_judge`: render a pool of
training faces (`faces.generate`) at several sizes, each resized to the judge's input size the
way `judge.predict` resizes, train with optax/AdamW on sigmoid cross-entropy under `augment`,
measure it on held-out faces (`measure`), and write the judge file with its provenance.

Seed ranges (configs/judge.py): training faces from 40,000,000, measurements from 50,000,000;
both disjoint from the edit runs' banks (0…), their test faces (10,000,000…), the feature net's
training pool (20,000,000…) and the decoder's validation faces (30,000,000…).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from dfi_jax.base import versions
from dfi_jax.data import faces
from dfi_jax.eval import judge as judge_lib
from dfi_jax.eval.judge_augment import Augmentation, augment, noise_bank


ATTRIBUTES = judge_lib.ATTRIBUTES


# --- data -------------------------------------------------------------------------------------

class Pool(NamedTuple):
  """Training faces at the judge's input size n = `judge.INPUT_SIZE`.

  Attributes:
    images: `[N, n, n, 3]` uint8.
    labels: `[N, 6]` bool, columns in `ATTRIBUTES` order.
    regions: `[N, n, n]` bool, the mask (`faces.render`) of one attribute per face, drawn
      uniformly from the seed; None when not rendered.
  """
  images: np.ndarray
  labels: np.ndarray
  regions: np.ndarray | None = None


def render(seeds, size: int, regions: bool = False, chunk: int = 256,
           desc: str | None = None) -> Pool:
  """Renders `faces.sample_face(seed)` at `size` for each seed, resized to the judge's input size
  as `judge.predict` does (regions: any covered pixel counts). Without `regions`,
  `faces.generate` (about twice as fast)."""
  seeds = list(seeds)
  n = judge_lib.INPUT_SIZE
  images = np.empty((len(seeds), n, n, 3), np.uint8)
  labels = np.empty((len(seeds), len(ATTRIBUTES)), bool)
  masks = np.empty((len(seeds), n, n), bool) if regions else None
  with tqdm(total=len(seeds), desc=desc or f"render {size}²", unit="face",
            disable=desc is None) as bar:
    for i in range(0, len(seeds), chunk):
      part_seeds = seeds[i:i + chunk]
      if regions:
        rendered = [faces.render(faces.sample_face(seed), size) for seed in part_seeds]
        part = np.stack([f.image for f in rendered])
        labels[i:i + chunk] = [faces.sample_face(seed).attributes for seed in part_seeds]
        chosen = [ATTRIBUTES[np.random.default_rng([seed, 7]).integers(len(ATTRIBUTES))]
                  for seed in part_seeds]
        region = np.stack([f.masks[a] for f, a in zip(rendered, chosen)])
        masks[i:i + chunk] = np.asarray(judge_lib.resize(region[..., None])[..., 0] > 0)
      else:
        part, labels[i:i + chunk] = faces.generate(part_seeds, size)
      images[i:i + chunk] = _to_uint8(judge_lib.resize(part))
      bar.update(len(part))
  return Pool(images, labels, masks)


def _to_uint8(images) -> np.ndarray:
  return np.asarray(jnp.round(jnp.clip(images, 0, 1) * 255), np.uint8)


def seed_ranges(start: int, counts) -> list[tuple[int, int]]:
  """Consecutive `[lo, hi)` seed ranges of `counts` faces from `start`."""
  bounds = np.concatenate([[0], np.cumsum(counts)]) + start
  return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


# --- training ---------------------------------------------------------------------------------

class TrainState(NamedTuple):
  params: dict
  opt_state: Any
  step: jax.Array  # int32 scalar


def optimizer_for(config) -> optax.GradientTransformation:
  """AdamW with a linear warm-up and cosine decay over `config.steps`."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, min(config.warmup, max(config.steps - 1, 1)),
      max(config.steps, 2))
  return optax.adamw(schedule, weight_decay=config.weight_decay)


def make_train_step(optimizer: optax.GradientTransformation, aug: Augmentation | None,
                    seed: int = 0) -> Callable:
  """`step(state, images [B, n, n, 3] uint8, labels [B, 6] bool, regions [B, n, n] bool, key)
  -> (state, loss)`, jitted.

  n is `judge.INPUT_SIZE`; the batch is augmented inside the step (`augment`, its noise cut from
  one `noise_bank` drawn from `seed`) unless `aug` is None.
  """
  bank = noise_bank(jax.random.key(seed), judge_lib.INPUT_SIZE)

  def loss_fn(params, images, labels):
    lg = judge_lib.logits(params, images)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(lg, labels.astype(jnp.float32)))

  @jax.jit
  def jitted(state: TrainState, bank, images, labels, regions, key):
    x = images.astype(jnp.float32) / 255.0
    if aug is not None:
      x = augment(key, x, aug, bank, regions)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, x, labels)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), loss

  return lambda state, images, labels, regions, key: jitted(state, bank, images, labels,
                                                            regions, key)


def fit(config, pool: Pool, step_fn: Callable | None = None, progress: bool = True
        ) -> tuple[dict, dict]:
  """Trains a judge from scratch on a pool.

  Args:
    config: a `configs/judge.py` config (channels, steps, batch_size, learning_rate, warmup,
      weight_decay, seed, augmentation).
    pool: the training faces (`render`); without regions, no region noise.
    step_fn: a `make_train_step` result to reuse (its optimizer must be `optimizer_for(config)`).
    progress: show a tqdm bar.

  Returns:
    `(params, info)`: float32 params and `{train_seconds, train_cpu_seconds, final_loss}`
    (wall and CPU time; loss: mean of the last 50 steps). Batches depend only on (seed, step).
  """
  n = judge_lib.INPUT_SIZE
  images, labels, regions = pool
  if images.shape[1:] != (n, n, 3) or images.dtype != np.uint8 or len(labels) != len(images):
    raise ValueError(f"images must be [N, {n}, {n}, 3] uint8 with one label row each, got "
                     f"{images.shape} {images.dtype} and {np.shape(labels)}")
  if regions is None:
    regions = np.zeros((1, n, n), bool)
  optimizer = optimizer_for(config)
  step_fn = step_fn or make_train_step(optimizer, Augmentation(**config.augmentation),
                                       config.seed)
  key = jax.random.key(config.seed)
  params = judge_lib.init(config.seed, config.channels)
  # Start from the label priors: the head's bias at their log-odds (no steps spent learning them).
  prior = np.clip(np.mean(labels, 0), 0.01, 0.99)
  params["head"]["bias"] = jnp.asarray(np.log(prior / (1 - prior)), jnp.float32)
  state = TrainState(params, optimizer.init(params), jnp.asarray(0, jnp.int32))
  losses = []
  t0, cpu0 = time.perf_counter(), time.process_time()
  with tqdm(total=config.steps, desc="train judge", unit="step", disable=not progress) as bar:
    for i in range(config.steps):
      idx = np.random.default_rng([config.seed, i]).integers(0, len(images), config.batch_size)
      state, loss = step_fn(state, images[idx], labels[idx], regions[idx % len(regions)],
                            jax.random.fold_in(key, i))
      losses.append(loss)
      bar.update(1)
      if i % 50 == 0 or i == config.steps - 1:
        bar.set_postfix(loss=f"{float(np.mean(losses[-50:])):.4f}")
  final = float(np.mean(jax.device_get(losses[-50:]))) if losses else float("nan")
  params = jax.device_get(state.params)
  return params, dict(train_seconds=time.perf_counter() - t0,
                      train_cpu_seconds=time.process_time() - cpu0, final_loss=final)


# --- measuring --------------------------------------------------------------------------------

def counterfactual_pairs(seeds, size: int) -> dict[str, tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]]:
  """Per attribute a: `(x, x_cf, mask)`, the faces of `seeds` rendered without a and with a
  (same identity, `faces.counterfactual`), `[N, S, S, 3]` float32 each, and a's mask `[N, S, S]`
  bool (the pixels toggling a may change)."""
  out = {}
  for a in ATTRIBUTES:
    xs, cfs, masks = [], [], []
    for seed in seeds:
      params = faces.with_attributes(faces.sample_face(seed), **{a: False})
      face = faces.render(params, size)
      xs.append(face.image)
      masks.append(face.masks[a])
      cfs.append(faces.counterfactual(params, a, size).image)
    out[a] = (np.stack(xs), np.stack(cfs), np.stack(masks))
  return out


def flip_rates(params: dict, pairs: dict) -> dict[str, float]:
  """Per attribute: the fraction of pairs where the judge says "absent" on x and "present" on
  x_cf (`counterfactual_pairs`); key `mean` is their mean."""
  out = {}
  for a, (x, x_cf, _) in pairs.items():
    col = ATTRIBUTES.index(a)
    before = judge_lib.predict(params, x)[:, col] > 0.5
    after = judge_lib.predict(params, x_cf)[:, col] > 0.5
    out[a] = float(np.mean(~before & after))
  out["mean"] = float(np.mean(list(out.values())))
  return out


def noise_false_positives(params: dict, pairs: dict, sigma: float, seed: int = 0
                          ) -> dict[str, float]:
  """Per attribute a: the fraction of faces without a that the judge calls a once Gaussian
  colour noise of std `sigma` is added inside a's mask (where a DFI edit for a paints)."""
  rng = np.random.default_rng(seed)
  out = {}
  for a, (x, _, mask) in pairs.items():
    noisy = np.clip(x + sigma * rng.standard_normal(x.shape) * mask[..., None], 0, 1)
    out[a] = float(np.mean(judge_lib.predict(params, noisy)[:, ATTRIBUTES.index(a)]
                           > 0.5))
  out["mean"] = float(np.mean(list(out.values())))
  return out


def measure(params: dict, config) -> dict:
  """Held-out measurements of a judge on faces from `config.eval_seed`.

  Returns a JSON-able dict: `accuracy` per size (`config.eval_sizes`) per attribute (and the
  same faces at 64² with N(0, σ) pixel noise for σ in `config.eval_noise`), `size_agreement`
  (fraction of labels equal at every size), `flip_rate` on counterfactual pairs at 64²
  (`config.cf_count` identities per attribute, seeds after the accuracy faces), and
  `noise_false_positive` per σ in `config.eval_region_noise` (Gaussian colour noise of std σ in
  the attribute's mask of a face without it: the fraction called as having it).
  """
  seeds = range(config.eval_seed, config.eval_seed + config.eval_count)
  rng = np.random.default_rng(config.seed)
  result: dict[str, Any] = dict(accuracy={}, eval_seeds=[seeds.start, seeds.stop])
  verdicts = []
  for size in config.eval_sizes:
    images, labels = faces.generate(seeds, size)
    result["accuracy"][f"{size}"] = judge_lib.accuracy(params, images, labels)
    verdicts.append(judge_lib.predict(params, images) > 0.5)
    if size == judge_lib.INPUT_SIZE:
      for sigma in config.eval_noise:
        noisy = np.clip(images + sigma * rng.standard_normal(images.shape), 0, 1)
        result["accuracy"][f"{size}+noise{sigma:g}"] = judge_lib.accuracy(params, noisy, labels)
  result["size_agreement"] = float(np.mean(np.all([v == verdicts[0] for v in verdicts], 0)))
  cf_seeds = range(seeds.stop, seeds.stop + config.cf_count)
  pairs = counterfactual_pairs(cf_seeds, judge_lib.INPUT_SIZE)
  result["cf_seeds"] = [cf_seeds.start, cf_seeds.stop]
  result["flip_rate"] = flip_rates(params, pairs)
  result["noise_false_positive"] = {
      f"{sigma:g}": noise_false_positives(params, pairs, sigma, config.seed)
      for sigma in config.eval_region_noise}
  return result


def train_and_save(config, out, command: str, progress: bool = True) -> dict:
  """Renders the pool, trains, measures and writes the judge file `out` (atomically).

  Returns the provenance written.
  """
  t0, cpu0 = time.perf_counter(), time.process_time()
  ranges = seed_ranges(config.train_seed, config.train_counts)
  parts = [render(range(lo, hi), size, regions=True,
                  desc=f"render {size}²" if progress else None)
           for (lo, hi), size in zip(ranges, config.train_sizes)]
  pool = Pool(*(np.concatenate(arrays) for arrays in zip(*parts)))
  render_seconds, render_cpu = time.perf_counter() - t0, time.process_time() - cpu0
  params, info = fit(config, pool, progress=progress)
  t1 = time.perf_counter()
  measured = measure(params, config)
  prov = judge_lib.provenance_for(
      params, command,
      description=(f"attribute judge: {len(config.channels)}-conv CNN trained {config.steps} "
                   f"steps on {len(pool.images)} generated faces"),
      training=config.to_dict(),
      train_seeds={f"{size}": list(r) for size, r in zip(config.train_sizes, ranges)},
      render_seconds=render_seconds, render_cpu_seconds=render_cpu,
      train_seconds=info["train_seconds"], train_cpu_seconds=info["train_cpu_seconds"],
      measure_seconds=time.perf_counter() - t1, final_loss=info["final_loss"],
      held_out=measured, packages=versions.package_versions(
          ("jax", "jaxlib", "flax", "optax", "numpy", "pillow"), "absent", python=False),
      environment=dict(xla_flags=os.environ.get("XLA_FLAGS", ""),
                       cpus=len(os.sched_getaffinity(0)), devices=[str(d) for d in jax.devices()]),
      parameters=int(sum(np.size(v) for v in jax.tree.leaves(params))))
  judge_lib.save(out, params, prov, dtype=config.store_dtype)
  return prov


def report(provenance: dict) -> str:
  """A short plain-text table of a judge file's held-out measurements (its provenance)."""
  held = provenance["held_out"]
  region = held["noise_false_positive"]
  columns = list(held["accuracy"]) + ["flip"] + [f"FP noise{k}" for k in region]
  lines = ["attribute   " + " ".join(f"{c:>13}" for c in columns)]
  for a in list(ATTRIBUTES) + ["mean"]:
    cells = [held["accuracy"][c][a] for c in held["accuracy"]]
    cells += [held["flip_rate"][a]] + [region[k][a] for k in region]
    lines.append(f"{a:<11} " + " ".join(f"{v:13.3f}" for v in cells))
  lines.append(f"labels equal at every size: {held['size_agreement']:.3f}; training "
               f"{provenance['train_seconds']:.0f} s "
               f"({provenance['train_cpu_seconds']:.0f} s CPU), "
               f"rendering {provenance['render_seconds']:.0f} s")
  return "\n".join(lines)
