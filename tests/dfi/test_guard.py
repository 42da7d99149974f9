"""guard.py: a solve that runs away returns its best iterate; a healthy one its last."""

import jax
import jax.numpy as jnp
import numpy as np

from dfi_jax.dfi import guard


def _toy(values):
  """A 'solver' whose k-th step moves z to k and reports values[k]."""
  table = jnp.asarray(values, jnp.float32)
  init = lambda z, target, variables: jnp.asarray(0, jnp.int32)

  def step(z, k, target, variables):
    return jnp.full_like(z, k + 1.0), k + 1, table[k], k + 1

  return guard.wrap(init, step)


def _run(values_per_image):
  inits, steps = zip(*(_toy(v) for v in values_per_image))
  z = jnp.zeros((len(values_per_image), 2))
  results = []
  for b, (init, step) in enumerate(zip(inits, steps)):
    zb, state = z[b], init(z[b], None, None)
    for _ in values_per_image[b]:
      zb, state, value, _ = step(zb, state, None, None)
    results.append((zb, state, value))
  zs = jnp.stack([r[0] for r in results])
  state = jax.tree.map(lambda *a: jnp.stack(a), *[r[1] for r in results])
  return guard.pick(zs, np.array([float(r[2]) for r in results]), state)


def test_a_diverged_solve_returns_its_best_iterate_and_a_healthy_one_its_last():
  z, loss = _run([[5.0, 3.0, 1.0, 10.0], [5.0, 1.0, 1.5, 1.2]])
  np.testing.assert_array_equal(np.asarray(z), [[3.0, 3.0], [4.0, 4.0]])  # best: step 3; last
  np.testing.assert_allclose(loss, [1.0, 1.2])


def test_a_parameter_dict_is_picked_leaf_by_leaf():
  best = dict(a=jnp.ones((2, 3)), b=jnp.ones((2, 1, 1)))
  last = dict(a=jnp.zeros((2, 3)), b=jnp.zeros((2, 1, 1)))
  state = (None, best, jnp.asarray([1.0, 1.0]))
  z, loss = guard.pick(last, np.array([3.0, 1.5]), state)
  np.testing.assert_array_equal(np.asarray(z["a"])[:, 0], [1.0, 0.0])
  np.testing.assert_array_equal(np.asarray(z["b"]).ravel(), [1.0, 0.0])
  np.testing.assert_allclose(loss, [1.0, 1.5])
