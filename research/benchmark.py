"""Reverse-map speed against a PyTorch peer: `python -m research.benchmark [--json_out=F]`.

  --config=experiments/configs/benchmark.py[:small|large|tiny]   (see that file)
  --sizes=64,200 --batch_sizes=1,8 --iterations=100 --solvers=torch,jaxopt_lbfgsb,scipy
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

# SciPy's BLAS threads would otherwise spin against XLA's on a small machine (MEASURED.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import math
import resource
import statistics
import subprocess
import sys
import time

from absl import flags
import numpy as np

from experiments import cli
from research import scipy_reference

_CONFIG = cli.define_config_file(
    "experiments/configs/benchmark.py", "Config file (FILE or FILE:variant).")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Write all runs and the table here (JSON).")
_SIZES = flags.DEFINE_list("sizes", [], "Image sides (overrides the config).")
_BATCHES = flags.DEFINE_list("batch_sizes", [], "Batch sizes (overrides the config).")
_ITERATIONS = flags.DEFINE_integer("iterations", None, "L-BFGS iterations (overrides).")
_SOLVERS = flags.DEFINE_string("solvers", "", "Solvers separated by ';' (overrides).")
_REPEATS = flags.DEFINE_integer("repeats", None, "Repeats per run (overrides).")
_PEER_PYTHON = flags.DEFINE_string("peer_python", None, "Python for the torch peer.")
_WORKER = flags.DEFINE_string("worker", "", "Internal: run one benchmark (JSON spec).")
_IN_PROCESS = flags.DEFINE_bool(
    "in_process", False, "Run every run in this process (quick smoke runs; peak RSS is then "
    "cumulative and the peer needs torch in this interpreter).")

MEGA = 1024.0  # ru_maxrss is in KiB on Linux


# ---------------------------------------------------------------------------------------
# The problem every solver solves.


def conv_gflop(size: int, taps, width: float = 1.0, architecture: str = "vgg19") -> float:
  """Forward GFLOP of the network's convolutions up to the deepest tap for one `size`² image."""
  from dfi_jax.nets import model as model_lib
  return model_lib.conv_gflop(size, taps, width, architecture)


def smooth_images(seed: int, batch: int, size: int) -> np.ndarray:
  """`[B, S, S, 3]` float32 in [0, 1]: blurry colour fields (a stand-in for photos)."""
  import jax
  import jax.numpy as jnp
  coarse = jax.random.uniform(jax.random.key(seed), (batch, 6, 6, 3))
  fine = jax.random.uniform(jax.random.fold_in(jax.random.key(seed), 1), (batch, size, size, 3))
  img = jax.image.resize(coarse, (batch, size, size, 3), "cubic") + 0.05 * (fine - 0.5)
  return np.asarray(jnp.clip(img, 0.0, 1.0), np.float32)


def make_problem(spec: dict):
  """Network, weights, start images `z0` and targets for one run (deterministic)."""
  import jax
  import jax.numpy as jnp
  from dfi_jax.dfi import features as features_lib
  from dfi_jax.nets import model as model_lib
  from dfi_jax.dfi import reconstruct
  from dfi_jax.nets import weights as weights_lib

  taps = tuple(spec["taps"])
  arch = spec.get("architecture", "vgg19")
  params = weights_lib.init_random(jax.random.key(spec["seed"]), width=spec["width"],
                                   last_layer=model_lib.deepest_layer(arch, taps),
                                   architecture=arch)
  net = model_lib.VGG(taps=taps, width=spec["width"], architecture=arch)
  size, batch = spec["size"], spec["batch"]
  fspec = features_lib.feature_spec(net, params, (size, size))
  z0 = smooth_images(spec["seed"] + 1, batch, size)
  goal = smooth_images(spec["seed"] + 2, batch, size)
  targets = np.asarray(features_lib.make_phi(net)(params, jnp.asarray(goal)))
  base = reconstruct.ReverseMapConfig(tv_weight=spec["tv_weight"], tv_beta=spec["tv_beta"])
  objective = reconstruct.make_objective(net, fspec, base)
  score = jax.jit(jax.vmap(objective, in_axes=(0, 0, None)))
  losses = lambda images: np.asarray(score(jnp.clip(jnp.asarray(images, jnp.float32), 0, 1),
                                           jnp.asarray(targets), {"params": params}))
  return dict(net=net, params=params, fspec=fspec, z0=z0, targets=targets, base=base,
              objective=objective, losses=losses)


def parse_solver(solver: str) -> tuple[str, dict]:
  """`name[:field=value,...]` -> (name, ReverseMapConfig overrides with typed values)."""
  from dfi_jax.dfi import reconstruct
  name, _, rest = solver.partition(":")
  fields = {f.name: f for f in reconstruct.ReverseMapConfig.__dataclass_fields__.values()}
  overrides = {}
  for item in filter(None, rest.split(",")):
    key, _, value = item.partition("=")
    if key not in fields:
      raise ValueError(f"unknown ReverseMapConfig field {key!r} in solver {solver!r}")
    kind = type(getattr(reconstruct.ReverseMapConfig(), key))
    overrides[key] = bool(int(value)) if kind is bool else kind(value)
  if name not in reconstruct.SOLVERS + ("scipy", "torch"):
    raise ValueError(f"unknown solver {name!r}; expected one of "
                     f"{reconstruct.SOLVERS + ('scipy', 'torch')}")
  if name == "torch" and overrides:
    raise ValueError("the torch peer takes no overrides")
  return name, overrides


def rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MEGA


# ---------------------------------------------------------------------------------------
# One run per process.


def run_jax(spec: dict, problem: dict, name: str, overrides: dict) -> dict:
  import dataclasses
  from dfi_jax.dfi import reconstruct
  config = dataclasses.replace(problem["base"], solver=name, chunk=spec["chunk"], **overrides)
  rm = reconstruct.ReverseMap(problem["net"], problem["fspec"], config)
  args = (problem["params"], problem["targets"], problem["z0"])
  t0 = time.perf_counter()
  rm(*args, spec["chunk"])  # compiles init and the chunk
  compile_s = time.perf_counter() - t0
  trajectory = []
  t0 = time.perf_counter()
  result = rm(*args, spec["iterations"], on_chunk=lambda done, loss: trajectory.append(
      (time.perf_counter() - t0, done, float(np.mean(loss)))))
  wall = time.perf_counter() - t0
  return dict(wall_s=wall, compile_s=compile_s, images=result.images,
              evaluations=float(np.mean(result.evaluations)), iterations=result.iterations,
              trajectory=trajectory)


def run_scipy(spec: dict, problem: dict, overrides: dict) -> dict:
  import jax
  import jax.numpy as jnp
  from dfi_jax.nets import model as model_lib
  history = overrides.get("history", 10)
  variables = {"params": problem["params"],
               "backward": model_lib.backward_kernels(problem["params"])}
  fg = jax.jit(jax.value_and_grad(problem["objective"]))
  z0, targets = problem["z0"], problem["targets"]
  t0 = time.perf_counter()
  jax.block_until_ready(fg(jnp.asarray(z0[0]), jnp.asarray(targets[0]), variables))
  compile_s = time.perf_counter() - t0
  images, evaluations, trajectory = [], 0, []
  t0 = time.perf_counter()
  for i in range(len(z0)):
    target = jnp.asarray(targets[i])

    def value_and_grad(z):
      v, g = fg(z, target, variables)
      if len(z0) == 1:
        trajectory.append((time.perf_counter() - t0, None, float(v)))
      return v, g

    image, res = scipy_reference.lbfgsb(value_and_grad, z0[i], spec["iterations"], history,
                                        ftol=0.0, gtol=0.0, maxfun=10 * spec["iterations"])
    images.append(image)
    evaluations += res.nfev
  wall = time.perf_counter() - t0
  return dict(wall_s=wall, compile_s=compile_s, images=np.stack(images),
              evaluations=evaluations / len(z0), iterations=spec["iterations"],
              trajectory=trajectory)


def run_torch(spec: dict, problem: dict) -> dict:
  import torch
  from dfi_jax.dfi import features as features_lib
  from dfi_jax.nets import model as model_lib
  if spec.get("torch_threads"):
    torch.set_num_threads(spec["torch_threads"])
  taps = tuple(spec["taps"])
  arch = spec.get("architecture", "vgg19")
  stop = model_lib.deepest_layer(arch, taps)
  convs = {n: (torch.from_numpy(np.ascontiguousarray(np.transpose(p["kernel"], (3, 2, 0, 1)))),
               torch.from_numpy(np.asarray(p["bias"])))
           for n, p in problem["params"].items()}
  mean = torch.tensor(model_lib.TORCHVISION_MEAN).view(1, 3, 1, 1)
  std = torch.tensor(model_lib.TORCHVISION_STD).view(1, 3, 1, 1)
  parts = features_lib.split(problem["targets"], problem["fspec"])
  targets = {t: torch.from_numpy(np.ascontiguousarray(
      parts[t].reshape(-1, *s).transpose(0, 3, 1, 2))) for t, s in zip(taps, problem["fspec"].shapes)}
  tv_weight, beta = spec["tv_weight"], spec["tv_beta"]

  def loss_fn(z):  # z [B, 3, H, W] -> [B]
    x = (z - mean) / std
    feature = 0.0
    for name, base in model_lib.layout(arch):
      if not base:
        x = torch.nn.functional.max_pool2d(x, 2, 2)
        continue
      x = torch.relu(torch.nn.functional.conv2d(x, *convs[name], padding=1))
      if name in taps:
        feature = feature + 0.5 * ((x - targets[name]) ** 2).sum(dim=(1, 2, 3))
      if name == stop:
        break
    d = z * 255.0
    dx = d[:, :, :-1, 1:] - d[:, :, :-1, :-1]
    dy = d[:, :, 1:, :-1] - d[:, :, :-1, :-1]
    tv = torch.clamp(dx * dx + dy * dy, min=1e-3).pow(beta / 2.0).sum(dim=(1, 2, 3))
    return feature / len(taps) + tv_weight * tv

  z0 = torch.from_numpy(np.ascontiguousarray(problem["z0"].transpose(0, 3, 1, 2)))
  t0 = time.perf_counter()
  warm = z0.clone().requires_grad_(True)
  loss_fn(warm).sum().backward()
  compile_s = time.perf_counter() - t0
  z = z0.clone().requires_grad_(True)
  n = spec["iterations"]
  opt = torch.optim.LBFGS([z], lr=1.0, max_iter=n, max_eval=10 * n, tolerance_grad=0.0,
                          tolerance_change=0.0, history_size=10, line_search_fn=None)
  trajectory, evaluations = [], [0]

  def closure():
    opt.zero_grad()
    loss = loss_fn(z)
    total = loss.sum()
    total.backward()
    evaluations[0] += 1
    trajectory.append((time.perf_counter() - t0, None, float(loss.detach().mean())))
    return total

  t0 = time.perf_counter()
  opt.step(closure)
  wall = time.perf_counter() - t0
  iterations = opt.state[opt._params[0]]["n_iter"]
  start = float(loss_fn(z0).mean())
  return dict(wall_s=wall, compile_s=compile_s,
              images=z.detach().numpy().transpose(0, 2, 3, 1).copy(),
              evaluations=float(evaluations[0]), iterations=int(iterations),
              trajectory=trajectory, torch_start_loss=start, torch_threads=torch.get_num_threads())


def worker(spec: dict) -> dict:
  if spec.get("xla_flags"):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + spec["xla_flags"]).strip()
  import jax
  problem = make_problem(spec)
  rss_before = rss_mb()
  name, overrides = parse_solver(spec["solver"])
  if name == "torch":
    out = run_torch(spec, problem)
  elif name == "scipy":
    out = run_scipy(spec, problem, overrides)
  else:
    out = run_jax(spec, problem, name, overrides)
  images = out.pop("images")
  finals = problem["losses"](images)
  start = float(np.mean(problem["losses"](problem["z0"])))
  out.update(loss=float(np.mean(finals)), finite=bool(np.isfinite(finals).all()),
             start_loss=start, rss_before_mb=rss_before, peak_rss_mb=rss_mb(),
             out_of_box=float(np.mean((images < 0) | (images > 1))), jax=jax.__version__,
             backend=jax.default_backend())
  return out


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


def time_to_loss(trajectory, goal: float) -> float | None:
  for t, _, loss in trajectory:
    if loss <= goal:
      return t
  return None


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
  head = ("| size | batch | solver | iters | wall s | s/image | evals/iter | ms/eval | "
          "loss@N / start | to peer loss s | vs peer | GFLOP/s | peak RSS MB |")
  lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['size']} | {r['batch']} | {r['solver']} | {r['error']} |")
      continue
    reach = r.get("to_peer_s")
    reach_s = "—" if reach is None else (f"{reach:.1f}" if reach == reach else "not reached")
    ratio = r.get("vs_peer")
    lines.append(
        f"| {r['size']}² | {r['batch']} | {r['solver']} | {r['iterations']} | "
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
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  if _WORKER.value:
    print("RESULT " + json.dumps(worker(json.loads(_WORKER.value))), flush=True)
    return
  c = _CONFIG.value
  sizes = [int(s) for s in _SIZES.value] or list(c.sizes)
  batches = [int(b) for b in _BATCHES.value] or list(c.batch_sizes)
  iterations = _ITERATIONS.value or c.iterations
  solvers = [s for s in _SOLVERS.value.split(";") if s] or list(c.solvers)
  repeats = _REPEATS.value or c.repeats
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
  for size in sizes:
    for batch in batches:
      peer_loss, peer_wall = None, None
      for solver in solvers:
        spec = dict(seed=c.seed, size=size, batch=batch, iterations=iterations, chunk=chunk,
                    solver=solver, width=c.width, taps=list(c.taps), tv_weight=c.tv_weight,
                    architecture=c.architecture,
                    tv_beta=c.tv_beta, torch_threads=c.torch_threads, xla_flags=c.xla_flags)
        python = peer_python if solver == "torch" else sys.executable
        if _IN_PROCESS.value:
          runs = [worker(spec) for _ in range(repeats)]
        else:
          runs = [run_one(spec, python, c.timeout_s) for _ in range(repeats)]
        row = dict(size=size, batch=batch, solver=solver,
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
        print(f"[{time.time() - t_start:6.0f} s] {size}² batch {batch} {solver}: "
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
