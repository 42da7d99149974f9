"""Reverse-map speed against a PyTorch peer: `python -m research.benchmark [--json_out=F]`.

  --config=experiments/configs/benchmark.py[:small|large|tiny]   (see that file)
  --sizes=64,200 --batch_sizes=1,8 --iterations=100 --solvers=torch,jaxopt_lbfgsb,scipy
  --objectives=plain,product    the paper's pixel objective and/or the edit runs' own
                                (where mask + chroma at 1/4 resolution; research/solvers.py)
  --repeats=3                   medians over fresh processes
  --peer_python=/path/python    an interpreter that has torch and dfi_jax's dependencies

Every run (size x batch x solver x repeat) is its own process, so its peak RSS is its own and
no run warms another's caches. All runs solve the identical problem: the same random
full-width VGG19 weights (seeded; the peer gets a copy), start images and targets, and the
reverse map's loss (features + λ·TV, `reconstruct.make_objective`); every final image is scored
by that one JAX objective, clipped to [0, 1]. Compilation and one warm-up are not timed.

The peer is torch.optim.LBFGS (lr 1, no line search, history 10: one evaluation per iteration)
on the same loss, unconstrained; its loss is taken at its final image clipped to [0, 1], the
image a user gets. "to peer loss" is the wall time a solver needs until its reported loss is at
or below the peer's loss after the same number of iterations (read every `chunk` iterations, so
an upper bound); speed-up = peer wall / that time. GFLOP/s counts the convolutions' forward and
input-gradient FLOPs (2x forward; no weight gradients are needed) per counted evaluation.
"""

from __future__ import annotations

import os

# SciPy's BLAS threads would otherwise spin against XLA's on a small machine (2 cores, measured).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import math
import statistics
import subprocess
import sys
import time

from absl import flags

from experiments import cli
from research.solvers import OBJECTIVES, conv_gflop, parse_solver, time_to_loss, worker


_CONFIG = cli.define_config_file(
    "experiments/configs/benchmark.py", "Config file (FILE or FILE:variant).")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Write all runs and the table here (JSON).")
_SIZES = flags.DEFINE_list("sizes", [], "Image sides (overrides the config).")
_BATCHES = flags.DEFINE_list("batch_sizes", [], "Batch sizes (overrides the config).")
_ITERATIONS = flags.DEFINE_integer("iterations", None, "L-BFGS iterations (overrides).")
_SOLVERS = flags.DEFINE_string("solvers", "", "Solvers separated by ';' (overrides).")
_REPEATS = flags.DEFINE_integer("repeats", None, "Repeats per run (overrides).")
_OBJECTIVES = flags.DEFINE_list(
    "objectives", [], "plain (pixels, the paper's) and/or product (where mask + coarse chroma, "
    "what the edit runs solve); overrides the config.")
_PEER_PYTHON = flags.DEFINE_string("peer_python", None, "Python for the torch peer.")
_WORKER = flags.DEFINE_string("worker", "", "Internal: run one benchmark (JSON spec).")
_IN_PROCESS = flags.DEFINE_bool(
    "in_process", False, "Run every run in this process (quick smoke runs; peak RSS is then "
    "cumulative and the peer needs torch in this interpreter).")


# ---------------------------------------------------------------------------------------
# The driver.


def run_one(spec: dict, python: str, timeout: float) -> dict:
  env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
  cmd = [python, "-m", "research.benchmark", "--worker=" + json.dumps(spec)]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  except subprocess.TimeoutExpired:
    return dict(error=f"timed out after {timeout:.0f} s")
  for line in proc.stdout.splitlines():
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
  return dict(error=f"exit {proc.returncode}: " + " | ".join(tail))


def has_torch(python: str) -> bool:
  probe = subprocess.run([python, "-c", "import torch, jax"], capture_output=True)
  return probe.returncode == 0


def summarise(runs: list[dict], size: int, batch: int, width: float, taps,
              architecture: str = "vgg19") -> dict:
  """Median over repeats of one (size, batch, solver)."""
  ok = [r for r in runs if "error" not in r]
  if not ok:
    return dict(error=runs[0]["error"])
  med = lambda k: statistics.median(r[k] for r in ok)
  best = min(ok, key=lambda r: r["wall_s"])
  row = {k: med(k) for k in ("wall_s", "compile_s", "evaluations", "loss", "start_loss",
                             "peak_rss_mb", "rss_before_mb", "out_of_box")}
  row["iterations"] = ok[0]["iterations"]
  if "torch_start_loss" in ok[0]:  # the peer's own loss at z0: the objectives agree
    row["torch_start_loss"] = ok[0]["torch_start_loss"]
  row["walls"] = [r["wall_s"] for r in ok]
  row["losses"] = [r["loss"] for r in ok]
  row["trajectory"] = best["trajectory"]
  row["finite"] = all(r["finite"] for r in ok)
  row["evals_per_iter"] = row["evaluations"] / max(row["iterations"], 1)
  row["ms_per_eval"] = 1e3 * row["wall_s"] / max(row["evaluations"], 1)
  row["s_per_image"] = row["wall_s"] / batch
  row["gflops"] = (row["evaluations"] * batch * 2 * conv_gflop(size, taps, width, architecture)
                   / row["wall_s"])
  return row


def markdown(rows: list[dict]) -> str:
  head = ("| size | batch | objective | solver | iters | wall s | s/image | evals/iter | ms/eval | "
          "loss@N / start | to peer loss s | vs peer | GFLOP/s | peak RSS MB |")
  lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['size']} | {r['batch']} | {r.get('objective', 'plain')} | "
                   f"{r['solver']} | {r['error']} |")
      continue
    reach = r.get("to_peer_s")
    reach_s = "—" if reach is None else (f"{reach:.1f}" if reach == reach else "not reached")
    ratio = r.get("vs_peer")
    lines.append(
        f"| {r['size']}² | {r['batch']} | {r.get('objective', 'plain')} | {r['solver']} | "
        f"{r['iterations']} | "
        f"{r['wall_s']:.1f} | {r['s_per_image']:.2f} | {r['evals_per_iter']:.2f} | "
        f"{r['ms_per_eval']:.0f} | {r['loss'] / r['start_loss']:.4f} | {reach_s} | "
        f"{'—' if ratio is None else f'{ratio:.2f}x'} | {r['gflops']:.0f} | "
        f"{r['peak_rss_mb']:.0f} |")
  return "\n".join(lines)


def machine() -> str:
  cpu = "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  return f"{cpu}, {os.cpu_count()} logical CPUs, load {load:.1f} at start"


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  if _WORKER.value:
    print("RESULT " + json.dumps(worker(json.loads(_WORKER.value))), flush=True)
    return
  c = _CONFIG.value
  sizes = [int(s) for s in _SIZES.value] or list(c.sizes)
  batches = [int(b) for b in _BATCHES.value] or list(c.batch_sizes)
  iterations = _ITERATIONS.value or c.iterations
  solvers = [s for s in _SOLVERS.value.split(";") if s] or list(c.solvers)
  repeats = _REPEATS.value or c.repeats
  objectives = list(_OBJECTIVES.value) or list(c.get("objectives", ("plain",)))
  for o in objectives:
    if o not in OBJECTIVES:
      raise ValueError(f"--objectives: expected plain and/or product, got {o!r}")
  peer_python = _PEER_PYTHON.value or c.peer_python or sys.executable
  for s in solvers:
    parse_solver(s)
  chunk = math.gcd(iterations, c.chunk)
  notes = [f"machine: {machine()}"]
  if _IN_PROCESS.value:
    peer_python = sys.executable
    notes.append("in-process: peak RSS is cumulative")
  if "torch" in [s.split(":")[0] for s in solvers] and not has_torch(peer_python):
    solvers = [s for s in solvers if s.split(":")[0] != "torch"]
    notes.append(f"torch peer skipped: `import torch` fails in {peer_python} "
                 "(install torch there or pass --peer_python)")
  # The peer runs first: its final loss is every other solver's goal.
  solvers.sort(key=lambda s: s != "torch")
  rows = []
  t_start = time.time()
  for size, batch, objective in [(s, b, o) for s in sizes for b in batches for o in objectives]:
    peer_loss, peer_wall = None, None
    for solver in solvers:
      spec = dict(seed=c.seed, size=size, batch=batch, iterations=iterations, chunk=chunk,
                  objective=objective,
                  solver=solver, width=c.width, taps=list(c.taps), tv_weight=c.tv_weight,
                  architecture=c.architecture,
                  tv_beta=c.tv_beta, torch_threads=c.torch_threads, xla_flags=c.xla_flags)
      python = peer_python if solver == "torch" else sys.executable
      if _IN_PROCESS.value:
        runs = [worker(spec) for _ in range(repeats)]
      else:
        runs = [run_one(spec, python, c.timeout_s) for _ in range(repeats)]
      row = dict(size=size, batch=batch, objective=objective, solver=solver,
                 **summarise(runs, size, batch, c.width, c.taps, c.architecture))
      if "error" not in row:
        if solver == "torch":
          peer_loss, peer_wall = row["loss"], row["wall_s"]
        elif peer_loss is not None and row["trajectory"]:
          # The final exact loss counts as a reading too.
          points = row["trajectory"] + [(row["wall_s"], iterations, row["loss"])]
          reach = time_to_loss(points, peer_loss)
          row["to_peer_s"] = float("nan") if reach is None else reach
          row["vs_peer"] = None if reach is None else peer_wall / reach
      rows.append(row)
      print(f"[{time.time() - t_start:6.0f} s] {size}² batch {batch} {objective} {solver}: "
            + (row["error"] if "error" in row else
               f"{row['wall_s']:.1f} s, loss {row['loss']:.6g}, "
               f"{row['evals_per_iter']:.2f} evals/iter"), file=sys.stderr, flush=True)
  table = markdown(rows)
  command = "python -m research.benchmark " + " ".join(sys.argv[1:])
  print(f"\n{command}\n{iterations} iterations, {c.architecture.upper()} width {c.width} to "
        f"{c.taps[-1]}, {repeats} repeat(s), medians; " + "; ".join(notes) + "\n")
  print(table)
  if _JSON_OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON_OUT.value)), exist_ok=True)
    with open(_JSON_OUT.value, "w") as f:
      json.dump(dict(command=command, config=c.to_dict(), iterations=iterations, notes=notes,
                     rows=rows, table=table), f, indent=1, default=str)


if __name__ == "__main__":
  cli.run_main(main)
