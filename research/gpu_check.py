"""The reverse map on an accelerator: correctness against the CPU, then timings.

  python -m research.gpu_check                       # on a GPU/TPU machine (~5-8 min on an H200)
  python -m research.gpu_check --allow_cpu --size=32 --width=0.0625 --batch_sizes=1,2 \
      --iterations=4 --large_size=64 --json_out=/tmp/g.json   # the same script, tiny, on CPU

1. Correctness: loss and gradient of the reverse map's objective at the start images, and the
   loss after `check_iterations` L-BFGS-B iterations, on the accelerator against the CPU backend
   of the same process; relative differences must be <= `tolerance` (1e-3). Run once per
   matmul precision (`--precisions`): XLA may use TF32 for float32 convolutions on GPUs.
2. Timing: `size`² images at each batch size, `iterations` iterations of the default solver
   (jaxopt L-BFGS-B, vmapped per image), then one `large_size`² image. Compilation and a
   warm-up are not timed. Per-image seconds are also scaled to 500 iterations (the paper's count).

Prints Markdown tables and writes JSON (`--json_out`); exits 1 if a correctness check fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from absl import flags
import numpy as np

from research import benchmark  # noqa: F401  defines --batch_sizes, --iterations, --json_out
from research import solvers
from experiments import cli

_SIZE = flags.DEFINE_integer("size", 200, "Image side for the batch timings.")
_CHECK_ITERATIONS = flags.DEFINE_integer("check_iterations", 20, "Iterations compared with CPU.")
_LARGE = flags.DEFINE_integer("large_size", 1000, "One image of this side (0 = skip).")
_WIDTH = flags.DEFINE_float("width", 1.0, "VGG19 width (1 = full).")
_PRECISIONS = flags.DEFINE_list("precisions", ["default", "highest"],
                                "jax_default_matmul_precision values to check and time.")
_TOLERANCE = flags.DEFINE_float("tolerance", 1e-3, "Max relative difference to the CPU.")
_ALLOW_CPU = flags.DEFINE_bool("allow_cpu", False, "Run on CPU (to test the script).")
_BUDGET = flags.DEFINE_float("budget_s", 480.0, "Skip remaining timings after this many s.")
# --batch_sizes, --iterations and --json_out are benchmark.py's flags (shared names).
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_ITERATIONS = 100

TAPS = ("conv3_1", "conv4_1", "conv5_1")


def precision_scope(precision: str):
  import jax
  if precision == "default":
    return contextlib.nullcontext()
  return jax.default_matmul_precision(precision)


def iterations() -> int:
  return flags.FLAGS.iterations or DEFAULT_ITERATIONS


def spec_for(size: int, batch: int) -> dict:
  return dict(seed=0, size=size, batch=batch, iterations=0, chunk=0, width=_WIDTH.value,
              taps=list(TAPS), tv_weight=0.001, tv_beta=2.0)


def rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check(device, cpu, precision: str) -> dict:
  """Objective, gradient and a short reverse map on `device` vs `cpu`."""
  import jax
  import jax.numpy as jnp
  from dfi_jax.nets import model as model_lib
  from dfi_jax.dfi import reconstruct
  size = min(_SIZE.value, 200)
  problem = solvers.make_problem(spec_for(size, 2))
  fg = jax.jit(jax.vmap(jax.value_and_grad(problem["objective"]), in_axes=(0, 0, None)))
  out = {}
  for name, dev in (("device", device), ("cpu", cpu)):
    put = lambda x: jax.device_put(x, dev)
    variables = put({"params": problem["params"],
                     "backward": model_lib.backward_kernels(problem["params"])})
    with jax.default_device(dev), precision_scope(precision):
      value, grad = fg(put(problem["z0"]), put(problem["targets"]), variables)
      rm = reconstruct.ReverseMap(problem["net"], problem["fspec"],
                                  reconstruct.ReverseMapConfig(chunk=_CHECK_ITERATIONS.value))
      result = rm(put(problem["params"]), put(problem["targets"]), put(problem["z0"]),
                  _CHECK_ITERATIONS.value)
    out[name] = (np.asarray(value), np.asarray(grad), problem["losses"](result.images))
  (v, g, l), (cv, cg, cl) = out["device"], out["cpu"]
  row = dict(precision=precision, size=size, loss_rel=rel(v, cv), grad_rel=rel(g, cg),
             reverse_map_loss_rel=rel(l, cl), device_loss=l.tolist(), cpu_loss=cl.tolist())
  # L-BFGS paths diverge with rounding; the objective and gradient must agree tightly, the loss
  # after the short run within the same tolerance per image.
  row["ok"] = bool(row["loss_rel"] <= _TOLERANCE.value and row["grad_rel"] <= _TOLERANCE.value
                   and row["reverse_map_loss_rel"] <= _TOLERANCE.value)
  return row


def time_run(device, precision: str, size: int, batch: int) -> dict:
  import jax
  from dfi_jax.dfi import reconstruct
  problem = solvers.make_problem(spec_for(size, batch))
  n = iterations()
  rm = reconstruct.ReverseMap(problem["net"], problem["fspec"], reconstruct.ReverseMapConfig(chunk=n))
  args = [jax.device_put(x, device) for x in (problem["params"], problem["targets"],
                                               problem["z0"])]
  with jax.default_device(device), precision_scope(precision):
    t0 = time.perf_counter()
    rm(*args, n)  # compile + warm-up
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = rm(*args, n)
    wall = time.perf_counter() - t0
  evals = float(np.mean(result.evaluations))
  gflop = solvers.conv_gflop(size, TAPS, _WIDTH.value)
  return dict(precision=precision, size=size, batch=batch, iterations=n, wall_s=wall,
              compile_s=compile_s, s_per_image=wall / batch,
              s_per_image_500=wall / batch * 500 / n, evals_per_iter=evals / n,
              tflops=evals * batch * 2 * gflop / wall / 1e3,
              loss=float(np.mean(problem["losses"](result.images))))


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  import jax
  cpu = jax.devices("cpu")[0]
  device = jax.devices()[0]
  if device.platform == "cpu" and not _ALLOW_CPU.value:
    raise ValueError("no accelerator found (jax.devices() is CPU); pass --allow_cpu to test")
  print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}", flush=True)
  t_start = time.perf_counter()
  checks = [check(device, cpu, p) for p in _PRECISIONS.value]
  print("\n| precision | loss rel | grad rel | loss after "
        f"{_CHECK_ITERATIONS.value} it. rel | ok |\n|---|---|---|---|---|")
  for c in checks:
    print(f"| {c['precision']} | {c['loss_rel']:.1e} | {c['grad_rel']:.1e} | "
          f"{c['reverse_map_loss_rel']:.1e} | {'yes' if c['ok'] else 'NO'} |", flush=True)
  runs = []
  batches = [int(b) for b in flags.FLAGS.batch_sizes] or DEFAULT_BATCHES
  items = [(p, _SIZE.value, b) for p in _PRECISIONS.value for b in batches]
  if _LARGE.value:
    items += [(p, _LARGE.value, 1) for p in _PRECISIONS.value]
  for precision, size, batch in items:
    if time.perf_counter() - t_start > _BUDGET.value:
      print(f"budget spent: skipped {precision} {size}² batch {batch}", flush=True)
      continue
    try:
      runs.append(time_run(device, precision, size, batch))
    except Exception as e:  # e.g. out of memory at a large batch: report and go on
      runs.append(dict(precision=precision, size=size, batch=batch,
                       error=f"{type(e).__name__}: {str(e)[:200]}"))
    r = runs[-1]
    print(f"  {precision} {size}² batch {batch}: "
          + (r["error"] if "error" in r else f"{r['s_per_image_500']:.3f} s/image at 500 it."),
          flush=True)
  print(f"\n| precision | size | batch | s/image ({iterations()} it.) | s/image at 500 it. "
        "| evals/iter | TFLOP/s | compile s |\n|---|---|---|---|---|---|---|---|")
  for r in runs:
    if "error" in r:
      print(f"| {r['precision']} | {r['size']}² | {r['batch']} | {r['error']} |")
      continue
    print(f"| {r['precision']} | {r['size']}² | {r['batch']} | {r['s_per_image']:.3f} | "
          f"{r['s_per_image_500']:.3f} | {r['evals_per_iter']:.2f} | {r['tflops']:.1f} | "
          f"{r['compile_s']:.0f} |")
  json_out = flags.FLAGS.json_out
  if json_out:
    os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
    with open(json_out, "w") as f:
      json.dump(dict(device=str(device.device_kind), checks=checks, runs=runs), f, indent=1)
  if not all(c["ok"] for c in checks):
    print("correctness check FAILED", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  cli.run_main(main)
