"""Training VGG19-architecture feature weights on generated faces (no ImageNet here).

The network (any width) gets a small head on global-average-pooled taps and learns, with
optax/Adam, to predict what made each face: the six attribute labels (sigmoid cross-entropy)
and/or the generator's numeric identity parameters (standardised, squared error). Optional L2
PGD adversarial training (`adv_epsilon` > 0) trains on worst-case perturbed inputs, the recipe the
robustness literature reports gives perceptually aligned gradients. The result is a native
weights file whose provenance records every setting and the final losses.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dfi_jax.data import faces
from dfi_jax.nets import model as model_lib
from dfi_jax.base import run_state


def identity_vector(p: faces.FaceParams) -> np.ndarray:
  """The generator's numeric parameters of one face as a flat float32 vector."""
  values = []
  for f in dataclasses.fields(p):
    if f.name in ("seed", "attributes"):
      continue
    v = getattr(p, f.name)
    if isinstance(v, bool):
      values.append(float(v))
    elif isinstance(v, (int, float)):
      values.append(float(v))
    elif isinstance(v, tuple) and all(isinstance(e, (int, float)) for e in v):
      values.extend(float(e) for e in v)
  return np.asarray(values, np.float32)


class Pool(NamedTuple):
  images: np.ndarray  # [N, S, S, 3] float32
  attributes: np.ndarray  # [N, 6] float32 in {0, 1}
  identity: np.ndarray  # [N, P] float32, standardised


def make_pool(seeds, size: int) -> Pool:
  """Renders the training faces once; identity parameters standardised over the pool."""
  params = [faces.sample_face(s) for s in seeds]
  images = np.stack([faces.render(p, size).image for p in params])
  attributes = np.stack([np.asarray(p.attributes, np.float32) for p in params])
  identity = np.stack([identity_vector(p) for p in params])
  identity = (identity - identity.mean(0)) / (identity.std(0) + 1e-6)
  return Pool(images, attributes, identity)


class FeatureClassifier(nn.Module):
  """VGG19 trunk + linear head on the global-average-pooled taps."""
  width: float
  taps: tuple[str, ...]
  outputs: int

  @nn.compact
  def __call__(self, images):
    taps = model_lib.VGG19(taps=self.taps, width=self.width, name="vgg")(images)
    pooled = jnp.concatenate([jnp.mean(taps[t], axis=(1, 2)) for t in self.taps], axis=-1)
    return nn.Dense(self.outputs, name="head")(pooled)


def augment(key: jax.Array, images: jax.Array, shift: int, noise: float) -> jax.Array:
  """Random translation (±`shift` px, edge padding), flip, brightness/contrast, pixel noise."""
  b, h, w, _ = images.shape
  k1, k2, k3, k4, k5 = jax.random.split(key, 5)
  if shift:
    padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    offsets = jax.random.randint(k1, (b, 2), 0, 2 * shift + 1)
    images = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, 3)))(
        padded, offsets)
  flip = jax.random.bernoulli(k2, 0.5, (b, 1, 1, 1))
  images = jnp.where(flip, images[:, :, ::-1], images)
  gain = jax.random.uniform(k3, (b, 1, 1, 1), minval=0.8, maxval=1.2)
  bias = jax.random.uniform(k4, (b, 1, 1, 1), minval=-0.1, maxval=0.1)
  images = (images - 0.5) * gain + 0.5 + bias
  images = images + noise * jax.random.normal(k5, images.shape)
  return jnp.clip(images, 0.0, 1.0)


def pgd_l2(loss_fn: Callable, images: jax.Array, epsilon: float, steps: int) -> jax.Array:
  """L2 projected gradient ascent on `loss_fn(images)`; returns perturbed images in [0, 1]."""
  step = 2.5 * epsilon / max(steps, 1)

  def norm(v):
    return jnp.sqrt(jnp.sum(v * v, axis=(1, 2, 3), keepdims=True)) + 1e-12

  def body(_, x):
    g = jax.grad(loss_fn)(x)
    x = x + step * g / norm(g)
    d = x - images
    d = d * jnp.minimum(1.0, epsilon / norm(d))
    return jnp.clip(images + d, 0.0, 1.0)

  return jax.lax.fori_loop(0, steps, body, images)


# Every field of experiments/configs/features.py, checked by experiments.train_features before
# any work.
CONFIG_RULES = dict(
    variant=run_state.text(), image_size=run_state.integer(16, 1024),
    pool_size=run_state.integer(1), pool_seed=run_state.integer(0),
    width=run_state.number(0, 4, open_low=True), taps=run_state.names(model_lib.CONV_NAMES),
    objective=run_state.choice(("attributes", "identity", "both")), steps=run_state.integer(0),
    batch_size=run_state.integer(1), learning_rate=run_state.number(0, open_low=True),
    shift=run_state.integer(0), noise=run_state.number(0), adv_epsilon=run_state.number(0),
    adv_steps=run_state.integer(0), seed=run_state.integer(0),
    store_dtype=run_state.choice(("float16", "float32")))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  width: float = 0.25
  taps: tuple[str, ...] = ("conv3_1", "conv4_1", "conv5_1")
  objective: str = "both"  # attributes | identity | both
  steps: int = 2000
  batch_size: int = 32
  learning_rate: float = 1e-3
  shift: int = 4
  noise: float = 0.02
  adv_epsilon: float = 0.0  # L2 radius in [0, 1] pixel units; 0 = standard training
  adv_steps: int = 3
  seed: int = 0


def train(config: TrainConfig, pool: Pool, log: Callable[[int, dict], None] | None = None
          ) -> tuple[dict, dict]:
  """Trains; returns `(vgg params, summary)` with the final running losses."""
  if config.objective not in ("attributes", "identity", "both"):
    raise ValueError(f"objective must be attributes, identity or both, got {config.objective!r}")
  n_attr, n_id = pool.attributes.shape[1], pool.identity.shape[1]
  use_attr = config.objective in ("attributes", "both")
  use_id = config.objective in ("identity", "both")
  net = FeatureClassifier(config.width, tuple(config.taps), n_attr + n_id)
  key = jax.random.key(config.seed)
  key, init_key = jax.random.split(key)
  variables = net.init(init_key, jnp.asarray(pool.images[:1]))
  schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps)
  opt = optax.adam(schedule)
  opt_state = opt.init(variables["params"])
  images_all = jnp.asarray(pool.images)
  attr_all, id_all = jnp.asarray(pool.attributes), jnp.asarray(pool.identity)

  def loss_fn(params, images, attrs, ident):
    out = net.apply({"params": params}, images)
    terms = {}
    if use_attr:
      terms["attributes"] = jnp.mean(optax.sigmoid_binary_cross_entropy(out[:, :n_attr], attrs))
    if use_id:
      terms["identity"] = jnp.mean((out[:, n_attr:] - ident) ** 2)
    return sum(terms.values()), terms

  @jax.jit
  def step(params, opt_state, key):
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (config.batch_size,), 0, images_all.shape[0])
    images = augment(k2, images_all[idx], config.shift, config.noise)
    attrs, ident = attr_all[idx], id_all[idx]
    if config.adv_epsilon > 0:
      images = pgd_l2(lambda x: loss_fn(params, x, attrs, ident)[0], images,
                      config.adv_epsilon, config.adv_steps)
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, images, attrs, ident)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, terms

  params = variables["params"]
  running, t0 = None, time.perf_counter()
  for i in range(config.steps):
    key, sub = jax.random.split(key)
    params, opt_state, loss, terms = step(params, opt_state, sub)
    terms = {k: float(v) for k, v in terms.items()} if (i % 50 == 0 or i == config.steps - 1) \
        else None
    if terms is not None:
      running = terms if running is None else {k: 0.5 * running[k] + 0.5 * v
                                               for k, v in terms.items()}
      if log is not None:
        log(i, terms)
  summary = dict(final_losses=running, seconds=time.perf_counter() - t0,
                 images_seen=config.steps * config.batch_size)
  return jax.tree.map(np.asarray, params["vgg"]), summary
