"""Where one value-and-gradient of the reverse map goes: `python -m research.eval_profile`.

  --size=64 --batch=18 --architecture=vgg16     the demo's workload (default)
  --size=200 --batch=1 --architecture=vgg19     the README's row
  --repeats=5                                   timed calls per variant (interleaved, medians)
  --variants=a,b                                 a subset of VARIANTS (default all)

Every variant is compiled first, then the variants are timed in turn, `repeats` rounds, so a
change of the machine's load hits them all alike (the machine is shared: print `uptime` beside
the numbers). Times are ms per call of one compiled function; "loop" variants run
`loop` value-and-gradients inside one `fori_loop` (as the solver's chunk does) and report the
time per evaluation. The random full-width weights and smooth images are research/solvers.py's.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time

from absl import app
from absl import flags

_SIZE = flags.DEFINE_integer("size", 64, "Image side.")
_BATCH = flags.DEFINE_integer("batch", 18, "Images per call.")
_ARCH = flags.DEFINE_string("architecture", "vgg16", "vgg16 or vgg19.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds.")
_LOOP = flags.DEFINE_integer("loop", 5, "Evaluations per loop variant call.")
_VARIANTS = flags.DEFINE_list("variants", [], "Subset of the variants (default all).")
_JSON = flags.DEFINE_string("json_out", "", "Write the medians here.")


def build(size: int, batch: int, architecture: str, loop: int) -> dict:
  """name -> (compiled function, its arguments, evaluations per call)."""
  import dataclasses
  from unittest import mock
  import jax
  import jax.numpy as jnp
  import optax
  from dfi_jax.dfi import reconstruct
  from dfi_jax.dfi import where as where_lib
  from dfi_jax.nets import model as model_lib
  from research import solvers

  spec = dict(seed=0, size=size, batch=batch, width=1.0, architecture=architecture,
              taps=["conv3_1", "conv4_1", "conv5_1"], tv_weight=0.002, tv_beta=2.0,
              objective="product")
  p = solvers.make_problem(spec)
  net, params = p["net"], p["params"]
  fast = {"params": params, "backward": model_lib.backward_kernels(params)}
  wino = {"params": params, "backward": model_lib.backward_kernels(params, winograd=True)}
  slow = {"params": params}
  z = jnp.asarray(p["z0"])
  t = jnp.asarray(p["targets"])
  where = jnp.asarray(p["where"])
  plain = reconstruct.make_objective(net, p["fspec"], dataclasses.replace(
      p["base"], chroma_scale=1, where=where_lib.WhereConfig(mode="off")))
  product = reconstruct.make_objective(net, p["fspec"], p["base"])
  u = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch,) + a.shape),
                   where_lib.zeros((size, size), p["base"].chroma_scale))
  u = jax.tree.map(lambda a: a + 0.01, u)
  vmapped = lambda f: jax.vmap(jax.value_and_grad(f), in_axes=(0, 0, None))
  joint = lambda f: jax.value_and_grad(
      lambda z, t, v: jnp.sum(jax.vmap(f, in_axes=(0, 0, None))(z, t, v)))

  def looped(vg):
    def run(z, t, v):
      def body(_, carry):
        z, acc = carry
        value, grad = vg(z, t, v)
        z = jax.tree.map(lambda a, g: a - 1e-9 * g, z, grad)
        return z, acc + jnp.sum(value)
      return jax.lax.fori_loop(0, loop, body, (z, jnp.float32(0)))
    return run

  def forward(z, v):
    return jax.vmap(lambda zi: net.apply(v, zi[None]))(z)

  tv = jax.vmap(jax.value_and_grad(lambda z: reconstruct.total_variation(z, 2.0)))
  opt = optax.lbfgs(learning_rate=1.0, memory_size=10, linesearch=None)
  opt_state = jax.vmap(opt.init)(z)

  def lbfgs_update(z, s):  # the two-loop recursion + projection, with a stand-in gradient
    def one(z, s):
      updates, s = opt.update(z - 0.5, s, z)
      return jnp.clip(optax.apply_updates(z, updates), 0, 1), s
    return jax.vmap(one)(z, s)

  def reference_pool(fn):  # compiled on its first call with flax's reduce-window pooling
    compiled = []           # (select-and-scatter gradient: the pooling before #28)

    def call(*args):
      if not compiled:
        with mock.patch.object(model_lib, "max_pool", model_lib.reference_max_pool):
          compiled.append(jax.jit(fn).lower(*args).compile())
      return compiled[0](*args)
    return call

  prod_args = (u, (t, z, where))
  return {
      "forward (φ), reduce-window pool": (reference_pool(forward), (z, slow), 1),
      "plain value+grad, fast_backward, reduce-window pool": (
          reference_pool(vmapped(plain)), (z, t, fast), 1),
      "loop: product, fast_backward, reduce-window pool": (
          reference_pool(looped(vmapped(product))), prod_args + (fast,), loop),
      "forward (φ)": (jax.jit(forward), (z, slow), 1),
      "plain value+grad, fast_backward": (jax.jit(vmapped(plain)), (z, t, fast), 1),
      "plain value+grad, XLA transpose": (jax.jit(vmapped(plain)), (z, t, slow), 1),
      "plain value+grad, joint batch": (jax.jit(joint(plain)), (z, t, fast), 1),
      "product value+grad, fast_backward": (jax.jit(vmapped(product)), prod_args + (fast,), 1),
      "product value+grad, XLA transpose": (jax.jit(vmapped(product)), prod_args + (slow,), 1),
      "loop: plain, fast_backward": (jax.jit(looped(vmapped(plain))), (z, t, fast), loop),
      "loop: plain, XLA transpose": (jax.jit(looped(vmapped(plain))), (z, t, slow), loop),
      "loop: product, fast_backward": (jax.jit(looped(vmapped(product))),
                                       prod_args + (fast,), loop),
      "loop: product, XLA transpose": (jax.jit(looped(vmapped(product))),
                                       prod_args + (slow,), loop),
      "forward (φ), winograd": (jax.jit(forward), (z, wino), 1),
      "plain value+grad, winograd": (jax.jit(vmapped(plain)), (z, t, wino), 1),
      "loop: plain, winograd": (jax.jit(looped(vmapped(plain))), (z, t, wino), loop),
      "loop: product, winograd": (jax.jit(looped(vmapped(product))), prod_args + (wino,), loop),
      "TV value+grad": (jax.jit(tv), (z,), 1),
      "L-BFGS two-loop + projection": (jax.jit(lbfgs_update), (z, opt_state), 1),
  }


def main(argv):
  del argv
  import jax
  uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
  variants = build(_SIZE.value, _BATCH.value, _ARCH.value, _LOOP.value)
  if _VARIANTS.value:
    variants = {k: v for k, v in variants.items() if any(s in k for s in _VARIANTS.value)}
  record = dict(size=_SIZE.value, batch=_BATCH.value, architecture=_ARCH.value,
                uptime_start=uptime(), compile_s={}, ms={})
  for name, (fn, args, _) in variants.items():
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    record["compile_s"][name] = time.perf_counter() - t0
  times = {name: [] for name in variants}
  for _ in range(_REPEATS.value):
    for name, (fn, args, evals) in variants.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(1e3 * (time.perf_counter() - t0) / evals)
  record["uptime_end"] = uptime()
  print(f"{_SIZE.value}² × {_BATCH.value}, {_ARCH.value}; {record['uptime_start']}")
  for name, ms in times.items():
    record["ms"][name] = statistics.median(ms)
    print(f"  {name:40s} {record['ms'][name]:9.1f} ms  (min {min(ms):.1f}; first call "
          f"{record['compile_s'][name]:.1f} s)")
  print(record["uptime_end"])
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(record, f, indent=1)


if __name__ == "__main__":
  app.run(main)
