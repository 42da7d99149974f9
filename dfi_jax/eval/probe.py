"""An automatic proxy of the perceptual study: linear attribute probes on the bank.

One logistic regression per attribute, trained on the bank's images and labels, scores each
edit: *success* = the probe says the edited image has the attribute the edit adds;
*preservation* = the fraction of the other attributes whose predicted label did not change.

The probe reads a representation *independent of DFI's φ* (`pixels`: the image box-downsampled
to 16² and standardised). A probe on φ itself would be judged by the same features the reverse
map was optimised to move, so an edit made of adversarial colour noise could score as a success.
A pixel probe has the opposite bias (it favours the pixel-space baseline), so read both columns
of the table next to the counterfactual error r.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPRESENTATIONS = ("pixels",)


class Probe(NamedTuple):
  weights: np.ndarray  # [D, A]
  bias: np.ndarray  # [A]
  mean: np.ndarray  # [D]
  scale: np.ndarray  # [D]
  representation: str


def pixel_features(images: np.ndarray, side: int = 16) -> np.ndarray:
  """`[N, H, W, 3]` -> `[N, side²·3]` box-downsampled pixels (H, W multiples of `side` or
  cropped to the largest multiple)."""
  n, h, w, _ = images.shape
  fh, fw = max(1, h // side), max(1, w // side)
  cropped = images[:, :fh * side, :fw * side]
  return cropped.reshape(n, side, fh, side, fw, 3).mean((2, 4)).reshape(n, -1)


def fit(features: np.ndarray, labels: np.ndarray, representation: str,
        l2: float = 1e-2, steps: int = 300) -> Probe:
  """Logistic regressions `[N, D]` features -> `[N, A]` bool labels (L-BFGS, L2 penalty)."""
  mean, scale = features.mean(0), features.std(0) + 1e-6
  x = jnp.asarray((features - mean) / scale, jnp.float32)
  y = jnp.asarray(labels, jnp.float32)

  def loss(p):
    logits = x @ p["w"] + p["b"]
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y)) + l2 * jnp.mean(p["w"] ** 2)

  params = {"w": jnp.zeros((x.shape[1], y.shape[1])), "b": jnp.zeros((y.shape[1],))}
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  @jax.jit
  def step(params, state):
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    return optax.apply_updates(params, updates), state

  state = opt.init(params)
  for _ in range(steps):
    params, state = step(params, state)
  return Probe(np.asarray(params["w"]), np.asarray(params["b"]), mean, scale, representation)


def predict(probe: Probe, features: np.ndarray) -> np.ndarray:
  """`[N, D]` -> `[N, A]` bool predicted labels."""
  logits = ((features - probe.mean) / probe.scale) @ probe.weights + probe.bias
  return logits > 0


def edit_scores(before: np.ndarray, after: np.ndarray, column: int) -> tuple[bool, float]:
  """(success, preservation) of one edit from `[A]` bool predictions before and after."""
  others = np.arange(len(before)) != column
  return bool(after[column]), float(np.mean(after[others] == before[others]))
