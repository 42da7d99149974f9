"""Fast mode: a feed-forward decoder D that inverts φ, used as the reverse map's warm start.

The paper's suggested future work (issue 7). D maps the network's tapped activations (the same
`FeatureSpec` φ uses) back to an image: it starts from the coarsest tap, and at each finer tap's
resolution upsamples (nearest ×2 + 3x3 conv) and merges that tap (concatenation + 3x3 conv), then
upsamples to the image size and ends in a sigmoid. It is trained with optax/Adam on generated
faces to minimise the pixel L2 ‖D(φ(x)) − x‖² and optionally the reverse map's own feature term
‖φ(D(φ(x))) − φ(x)‖² (`feature_weight`).

A decoder file is a `.npz` like a weights file (`weights.py`): one array per parameter, keyed
`Conv_0/kernel`, plus `__provenance__` JSON with `format` "dfi_jax-decoder-v1", the taps and
their shapes, the image size, the channels, and the sha256 and settings of the VGG weights it
was trained against (a decoder inverts one φ only; `check_compatible` refuses any other).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from dfi_jax.dfi import features as features_lib
from dfi_jax.base import files as files_lib
from dfi_jax.nets import model as model_lib
from dfi_jax.dfi import reconstruct
from dfi_jax.base import run_state
from dfi_jax.nets import weights as weights_lib

FORMAT = "dfi_jax-decoder-v1"
REQUIRED = ("taps", "shapes", "image_size", "channels", "weights_sha256", "made_by")
# How the warm start uses D (measured by research/fast_mode.py, see its docstring):
#   decoded  z0 = D(t)
#   change   z0 = x + D(t) − D(φ(x))  (D's own reconstruction error cancels)
START_MODES = ("decoded", "change")
DEFAULT_START = "change"  # fast_mode.py: more images reach the cold loss, lower r than "decoded"


# Every field of experiments/configs/decoder.py, checked by experiments.train_decoder before any
# work.
TRAINING_RULES = dict(
    variant=run_state.text(), weights=run_state.text(),
    taps=run_state.names(model_lib.CONV_NAMES), image_size=run_state.integer(16, 1024),
    pool_seed=run_state.integer(0), pool_size=run_state.integer(1),
    valid_seed=run_state.integer(0), valid_size=run_state.integer(1),
    channels=run_state.integer(1), steps=run_state.integer(0), batch_size=run_state.integer(1),
    learning_rate=run_state.number(0, open_low=True), feature_weight=run_state.number(0),
    edit_delta=run_state.number(), tv_weight=run_state.number(0),
    tv_beta=run_state.number(0, open_low=True), init_from=run_state.text(),
    seed=run_state.integer(0), save_every=run_state.integer(1))


class DecoderError(ValueError):
  """A decoder file that is missing, unreadable, or made for another φ."""


class DecoderSpec(NamedTuple):
  """What fixes a decoder's architecture (hashable: a static argument of jitted functions)."""
  features: features_lib.FeatureSpec  # the φ layout it reads
  image_size: int  # S: it writes `[B, S, S, 3]`
  channels: int = 32  # width of every conv block


class _Decoder(nn.Module):
  spec: DecoderSpec

  @nn.compact
  def __call__(self, taps: dict[str, jax.Array]) -> jax.Array:
    c = self.spec.channels
    # Coarsest first; taps of equal resolution merge at the same stage.
    order = sorted(zip(self.spec.features.taps, self.spec.features.shapes),
                   key=lambda ts: ts[1][0] * ts[1][1])
    h = None
    for name, (th, tw, _) in order:
      if h is not None:
        while h.shape[1] < th:
          h = nn.relu(nn.Conv(c, (3, 3))(_upsample(h)))
        h = jnp.concatenate([h[:, :th, :tw], taps[name]], axis=-1)
      else:
        h = taps[name]
      h = nn.relu(nn.Conv(c, (3, 3))(h))
    s = self.spec.image_size
    while h.shape[1] < s:
      h = nn.relu(nn.Conv(c, (3, 3))(_upsample(h)))
    return nn.sigmoid(nn.Conv(3, (3, 3))(h[:, :s, :s]))


def _upsample(h: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)


def spec_for(feature_spec: features_lib.FeatureSpec, image_size: int, channels: int = 32
             ) -> DecoderSpec:
  """A `DecoderSpec`; checks that every tap is no larger than the image."""
  for t, (h, w, _) in zip(feature_spec.taps, feature_spec.shapes):
    if h > image_size or w > image_size:
      raise ValueError(f"tap {t} is {h}x{w}, larger than the image size {image_size}")
  if channels <= 0:
    raise ValueError(f"channels must be positive, got {channels}")
  return DecoderSpec(feature_spec, int(image_size), int(channels))


def init(key: jax.Array, spec: DecoderSpec) -> dict:
  """Random params for `spec` (Flax's default conv init, biases zero)."""
  dummy = jnp.zeros((1, spec.features.dim), jnp.float32)
  return _Decoder(spec).init(key, _unflatten(dummy, spec.features))["params"]


def _unflatten(phi: jax.Array, fspec: features_lib.FeatureSpec) -> dict[str, jax.Array]:
  parts = features_lib.split(phi, fspec)
  return {t: parts[t].reshape(phi.shape[0], *s) for t, s in zip(fspec.taps, fspec.shapes)}


def apply(params: dict, phi: jax.Array, spec: DecoderSpec) -> jax.Array:
  """D(φ): `phi` `[B, D]` float32 (φ's flat layout, `spec.features`) -> `[B, S, S, 3]` float32
  in [0, 1]. Accepts a dict tap -> `[B, h, w, c]` as well."""
  if isinstance(phi, dict):
    taps = {t: jnp.asarray(phi[t], jnp.float32) for t in spec.features.taps}
  else:
    phi = jnp.asarray(phi, jnp.float32)
    if phi.ndim != 2 or phi.shape[1] != spec.features.dim:
      raise ValueError(f"phi must be [B, {spec.features.dim}], got shape {phi.shape}")
    taps = _unflatten(phi, spec.features)
  for t, s in zip(spec.features.taps, spec.features.shapes):
    if taps[t].shape[1:] != tuple(s):
      raise ValueError(f"tap {t} must be [B, {', '.join(map(str, s))}], got {taps[t].shape}")
  return _Decoder(spec).apply({"params": params}, taps)


def warm_start(params: dict, spec: DecoderSpec, targets: jax.Array, x: jax.Array,
               phi_x: jax.Array | None = None, mode: str = "decoded") -> np.ndarray:
  """The reverse map's z0 for edit targets `targets` `[B, D]` of inputs `x` `[B, S, S, 3]`.

  `mode` (`START_MODES`): `decoded` = D(t); `change` = x + D(t) − D(φ(x)) (needs `phi_x`
  `[B, D]`). Returns `[B, S, S, 3]` float32 in [0, 1].
  """
  if mode not in START_MODES:
    raise ValueError(f"mode must be one of {START_MODES}, got {mode!r}")
  z0 = _jit_apply(params, jnp.asarray(targets, jnp.float32), spec)
  if mode == "change":
    if phi_x is None:
      raise ValueError("mode 'change' needs phi_x")
    z0 = jnp.asarray(x, jnp.float32) + z0 - _jit_apply(params, jnp.asarray(phi_x, jnp.float32),
                                                         spec)
  return np.asarray(jnp.clip(z0, 0.0, 1.0))


_jit_apply = jax.jit(apply, static_argnums=(2,))


class TrainState(NamedTuple):
  params: dict
  opt_state: Any
  step: jax.Array  # int32 scalar


def make_train_step(net, spec: DecoderSpec, optimizer: optax.GradientTransformation,
                    feature_weight: float = 0.0, edit_delta: float = 0.0,
                    tv_weight: float = 0.0, tv_beta: float = 2.0) -> Callable:
  """Jitted `step(state, vgg_params, images [B, S, S, 3], key) -> (state, metrics)`.

  loss = mean pixel squared error ‖D(t) − x‖² + `feature_weight` · the reverse map's objective
  at D(t) (mean over layers of ½‖φ_l(D(t)) − t_l‖² + `tv_weight` · TV^`tv_beta`, batch mean).
  With `edit_delta` = 0 the targets are t = φ(x); with `edit_delta` > 0 they are edit-like,
  t = φ(x) + δ·w with δ ~ U(0, `edit_delta`) per image and w the difference of the φ means of
  two random halves of the batch, so D learns to invert the off-manifold targets the reverse
  map gets (there the pixel term only keeps D(t) near x). φ (`net`, `vgg_params`) is frozen.
  """

  def objective(decoded, vgg_params, target):
    phi_d = features_lib.flatten(net.apply({"params": vgg_params}, decoded), net.taps)
    feature = jax.vmap(reconstruct.feature_loss, in_axes=(0, 0, None))(phi_d, target,
                                                                       spec.features)
    tv = jax.vmap(lambda z: reconstruct.total_variation(z, tv_beta))(decoded)
    return jnp.mean(feature + tv_weight * tv)

  def loss_fn(params, vgg_params, images, key):
    phi_x = features_lib.flatten(net.apply({"params": vgg_params}, images), net.taps)
    target = phi_x
    if edit_delta > 0:
      b = images.shape[0]
      k1, k2 = jax.random.split(key)
      perm = jax.random.permutation(k1, b)
      w = phi_x[perm[:b // 2]].mean(0) - phi_x[perm[b // 2:]].mean(0)
      target = phi_x + jax.random.uniform(k2, (b, 1), maxval=edit_delta) * w
    decoded = apply(params, target, spec)
    pixel = jnp.mean((decoded - images) ** 2)
    metrics = {"pixel": pixel}
    loss = pixel
    if feature_weight:
      metrics["objective"] = objective(decoded, vgg_params, target)
      loss = loss + feature_weight * metrics["objective"]
    metrics["loss"] = loss
    return loss, metrics

  @jax.jit
  def step(state: TrainState, vgg_params, images, key):
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, vgg_params, jnp.asarray(images, jnp.float32), key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state, state.step + 1), metrics

  return step


def init_train_state(params: dict, optimizer: optax.GradientTransformation) -> TrainState:
  return TrainState(params, optimizer.init(params), jnp.asarray(0, jnp.int32))


# --- files ------------------------------------------------------------------------------------

def save_train_state(path: str | os.PathLike, state: TrainState, settings: dict) -> None:
  """A training checkpoint: the state's leaves and the settings that made it, atomically."""
  leaves = jax.tree.leaves(jax.device_get(state))
  arrays = {f"leaf{i}": np.asarray(v) for i, v in enumerate(leaves)}
  arrays["settings"] = np.frombuffer(json.dumps(settings, sort_keys=True).encode(), np.uint8)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  files_lib.atomic_write_bytes(path, buffer.getvalue())


def load_train_state(path: str | os.PathLike, fresh: TrainState, settings: dict):
  """The state `save_train_state` kept at `path` for these settings, else None; refuses other
  settings. A damaged file is named on stderr and training starts afresh."""
  leaves = jax.tree.leaves(fresh)
  found = run_state.read_state_file(
      Path(path), dict(settings=None, **{f"leaf{i}": np.shape(v) for i, v in enumerate(leaves)}))
  if found is None:
    return None
  try:
    saved = json.loads(found["settings"].tobytes().decode())
  except ValueError as e:
    run_state.warn(f"{path} is damaged ({e}); training starts afresh")
    return None
  if saved != json.loads(json.dumps(settings, sort_keys=True)):
    raise ValueError(f"{path} holds a run with other settings; delete it or use another --out")
  return jax.tree.unflatten(jax.tree.structure(fresh),
                            [jnp.asarray(found[f"leaf{i}"]) for i in range(len(leaves))])


def provenance_for(spec: DecoderSpec, weights_path: str | os.PathLike, weights_provenance: dict,
                   made_by: str, **extra: Any) -> dict:
  """The provenance record tying a decoder to its φ (taps, shapes, size, weights file)."""
  return dict(format=FORMAT, taps=list(spec.features.taps),
              shapes=[list(s) for s in spec.features.shapes], image_size=spec.image_size,
              channels=spec.channels, weights_sha256=run_state.file_sha256(weights_path),
              weights_description=weights_provenance.get("description", ""),
              preprocessing=weights_provenance.get("preprocessing"),
              pooling=weights_provenance.get("pooling"), made_by=made_by, **extra)


def save(path: str | os.PathLike, params: dict, provenance: dict) -> Path:
  """Writes `params` (float32) and `provenance` atomically (temp file + rename) to `path`."""
  return weights_lib.save_tree(path, params, provenance, FORMAT, REQUIRED, DecoderError,
                               "float32")


def load(path: str | os.PathLike) -> tuple[dict, DecoderSpec, dict]:
  """Reads a decoder file: `(params, spec, provenance)`; raises `DecoderError` (one line)."""
  flat, meta = weights_lib.load_tree(path, FORMAT, REQUIRED, DecoderError, "decoder",
                                     "python -m experiments.train_decoder")
  fspec = features_lib.FeatureSpec(tuple(meta["taps"]),
                                   tuple(tuple(int(v) for v in s) for s in meta["shapes"]))
  spec = DecoderSpec(fspec, int(meta["image_size"]), int(meta["channels"]))
  want = traverse_util.flatten_dict(jax.eval_shape(lambda: init(jax.random.key(0), spec)))
  if {k: v.shape for k, v in want.items()} != {k: v.shape for k, v in flat.items()}:
    raise DecoderError(f"{path}: parameters do not match the recorded architecture")
  return traverse_util.unflatten_dict(flat), spec, meta


def check_compatible(provenance: dict, feature_spec: features_lib.FeatureSpec,
                     image_size: int, weights_sha256: str, where: str) -> None:
  """Refuses a decoder made for another φ (taps, their shapes, image size or weights file)."""
  have = (tuple(provenance["taps"]), tuple(tuple(s) for s in provenance["shapes"]),
          int(provenance["image_size"]), provenance["weights_sha256"])
  want = (tuple(feature_spec.taps), tuple(tuple(s) for s in feature_spec.shapes),
          int(image_size), weights_sha256)
  names = ("taps", "tap shapes", "image_size", "weights sha256")
  diff = [f"{n} {a} (run: {b})" for n, a, b in zip(names, have, want) if a != b]
  if diff:
    raise DecoderError(f"{where}: the decoder was trained for another φ: {'; '.join(diff)}; "
                       "train one for these settings with `python -m experiments.train_decoder`")
