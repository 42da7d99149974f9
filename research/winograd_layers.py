"""Direct against Winograd convolution per VGG layer: `python -m research.winograd_layers`.

  --size=64 --batch=18 --architecture=vgg16     the demo's workload (default)
  --size=200 --batch=1 --architecture=vgg19     the README's row

For every convolution up to conv5_1 at the spatial size it sees in that workload (floor
pooling), one value and input gradient of the layer alone (`sum(sin(conv(x)))`, random input
and He-scaled kernels): the direct path the reverse map takes without Winograd
(`model.conv3x3`, the flipped-kernel input gradient) against `model.conv3x3_winograd`. Compiled
first, then timed in interleaved rounds (medians, ms), with the largest difference of the two
gradients relative to their largest value. `model.WINOGRAD_MIN_SHARE` was chosen from this
table (docs/benchmarks.md). Print `uptime` beside it: the machine is shared.
"""

from __future__ import annotations

import statistics
import subprocess
import time

from absl import app
from absl import flags

_SIZE = flags.DEFINE_integer("size", 64, "Image side.")
_BATCH = flags.DEFINE_integer("batch", 18, "Images per call.")
_ARCH = flags.DEFINE_string("architecture", "vgg16", "vgg16 or vgg19.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed rounds.")


def layers(size: int, architecture: str, width: float = 1.0, last: str = "conv5_1"):
  """`[(name, side, c_in, c_out)]` of the convolutions up to `last` (`model.conv_shapes`)."""
  from dfi_jax.nets import model as model_lib
  return model_lib.conv_shapes(size, architecture, width, last)


def measure(size: int, batch: int, architecture: str, repeats: int, width: float = 1.0
            ) -> list[dict]:
  """One row per layer: ms direct / Winograd (value + input gradient) and their difference."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from dfi_jax.nets import model as model_lib
  from dfi_jax.nets import winograd

  def grad_of(conv):
    return jax.jit(jax.grad(lambda x, *k: jnp.sum(jnp.sin(conv(x, *k)))))

  direct, wino = grad_of(model_lib.conv3x3), grad_of(model_lib.conv3x3_winograd)
  rng = np.random.default_rng(0)
  rows = []
  for name, side, cin, cout in layers(size, architecture, width):
    x = jnp.asarray(rng.standard_normal((batch, side, side, cin)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin), jnp.float32)
    kt = model_lib.flip_kernel(k)
    calls = {"direct": (direct, (x, k, kt)),
             "winograd": (wino, (x, k, winograd.kernel_transform(k), winograd.kernel_transform(kt)))}
    got = {n: np.asarray(f(*a)) for n, (f, a) in calls.items()}  # compiled here
    times = {n: [] for n in calls}
    for _ in range(repeats):
      for n, (f, a) in calls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(f(*a))
        times[n].append(1e3 * (time.perf_counter() - t0))
    ms = {n: statistics.median(v) for n, v in times.items()}
    rows.append(dict(layer=name, side=side, c_in=cin, c_out=cout, direct_ms=ms["direct"],
                     winograd_ms=ms["winograd"], ratio=ms["winograd"] / ms["direct"],
                     error=float(np.abs(got["winograd"] - got["direct"]).max()
                                 / np.abs(got["direct"]).max())))
  return rows


def main(argv):
  del argv
  uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
  print(uptime(), flush=True)
  rows = measure(_SIZE.value, _BATCH.value, _ARCH.value, _REPEATS.value)
  print(f"\n{_ARCH.value} at {_SIZE.value}² × {_BATCH.value}, value + input gradient per layer, "
        f"medians of {_REPEATS.value} interleaved rounds\n")
  print("| layer | side | channels | direct ms | Winograd ms | Winograd / direct | rel. diff |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['layer']} | {r['side']} | {r['c_in']} → {r['c_out']} | {r['direct_ms']:.1f} | "
          f"{r['winograd_ms']:.1f} | {r['ratio']:.2f} | {r['error']:.1e} |")
  print("\n" + uptime())


if __name__ == "__main__":
  app.run(main)
