"""A tiny reverse-map problem shared by the solver's and the where mask's tests: a 1/16-width
random VGG19 with taps conv2_1 and conv3_1, two `[SIZE, SIZE, 3]` images and noisy φ targets."""

import jax
import jax.numpy as jnp
import numpy as np

from dfi_jax.dfi import features as features_lib
from dfi_jax.nets import model as model_lib
from dfi_jax.nets import weights as weights_lib


def reverse_map_problem(size: int):
  """`(params, net, spec, x [2, size, size, 3], target [2, D])`."""
  params = weights_lib.init_random(jax.random.key(0), width=1 / 16)
  net = model_lib.VGG19(taps=("conv2_1", "conv3_1"), width=1 / 16)
  spec = features_lib.feature_spec(net, params, (size, size))
  phi = features_lib.make_phi(net)
  rng = np.random.default_rng(0)
  x = rng.uniform(0.2, 0.8, (2, size, size, 3)).astype(np.float32)
  target = np.asarray(phi(params, jnp.asarray(x)))
  target = target + 0.3 * rng.standard_normal(target.shape).astype(np.float32) * target.std()
  return params, net, spec, x, target
