"""Issue #28's table, re-made side by side: `python -m research.speed_table [--baseline=REV]`.

For each row (64² × 18 on VGG16: what `make demo` solves; 200² × 1 on full-width VGG19: the
README's row) and each objective (plain: the paper's pixels; product: the where mask + coarse
chroma the edit runs solve), it runs the torch peer once and then dfi_jax's default solver twice,
interleaved: as of `--baseline` (a git revision, exported to a temporary folder) and as of this
working tree. Every run is its own process (research/solvers.py's `worker`, the same harness for
both trees, so only dfi_jax differs). Then `make demo`'s run (`python -m experiments.transform`)
for each tree, twice: with an empty bank cache, and again with the cache it left (the weights
cache is the user's).

Prints one Markdown table (per evaluation, loss after N iterations, time to reach the peer's
N-iteration loss, against the peer) and the demo times, with `uptime` before and after, and
writes everything as JSON with `--json_out`. Takes ~25 min on the 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app
from absl import flags

from research import solvers

ROOT = Path(__file__).resolve().parents[1]
# (size, batch, architecture) of issue #28's two rows.
ROWS = ((64, 18, "vgg16"), (200, 1, "vgg19"))
DEFAULT_SOLVER = "optax_lbfgs:linesearch=none"

_BASELINE = flags.DEFINE_string("baseline", "6778195", "Git revision to compare against.")
_ITERATIONS = flags.DEFINE_integer("iterations", 100, "L-BFGS iterations per run.")
_OBJECTIVES = flags.DEFINE_list("objectives", ["plain", "product"], "plain and/or product.")
_ROWS = flags.DEFINE_list("rows", ["64", "200"], "Which rows (by image side).")
_DEMO = flags.DEFINE_enum("demo", "both", ["both", "warm", "off"],
                          "Demo runs: first and second, only with a warmed cache, or none.")
_JSON = flags.DEFINE_string("json_out", "", "Write every number here.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tests: 32² × 2 on a 1/16-width network, 4 "
                           "iterations (with --demo=off: seconds).")


def uptime() -> str:
  return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def export(revision: str, into: Path) -> Path:
  """The tree at `revision` in `into`, with this tree's research/ (the harness) over it."""
  archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True,
                           check=True).stdout
  into.mkdir(parents=True)
  subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
  shutil.rmtree(into / "research")
  shutil.copytree(ROOT / "research", into / "research",
                  ignore=shutil.ignore_patterns("__pycache__"))
  return into


def run_worker(spec: dict, tree: Path) -> dict:
  env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
  proc = subprocess.run([sys.executable, "-m", "research.benchmark",
                         "--worker=" + json.dumps(spec)], cwd=tree, env=env,
                        capture_output=True, text=True)
  for line in proc.stdout.splitlines():
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  return dict(error=f"exit {proc.returncode}: " + " | ".join(proc.stderr.strip().splitlines()[-3:]))


def run_demo(tree: Path, workdir: Path, cache: Path) -> dict:
  env = dict(os.environ, DFI_JAX_BANK_CACHE=str(cache))
  before = uptime()
  t0 = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "experiments.transform", f"--workdir={workdir}"],
                        cwd=tree, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if proc.returncode:
    return dict(error=proc.stderr.strip().splitlines()[-1:], uptime=before)
  timings = json.loads((workdir / "metrics.json").read_text()).get("timings", {})
  return dict(wall_s=wall, timings=timings, uptime=before, uptime_after=uptime())


def per_eval(r: dict) -> str:
  if "error" in r:
    return r["error"][:60]
  return (f"{1e3 * r['wall_s'] / max(r['evaluations'], 1):.0f} ms, loss {r['loss']:.4g}"
          + (f", to peer's {r['to_peer_s']:.1f} s ({r['vs_peer']:.2f}× peer's time)"
             if r.get("to_peer_s") is not None else ", never reaches the peer's"))


def main(argv):
  del argv
  record = dict(baseline=_BASELINE.value, uptime_start=uptime(), rows=[], demo={})
  with tempfile.TemporaryDirectory(prefix="speed_table_") as tmp:
    tmp = Path(tmp)
    trees = {"before": export(_BASELINE.value, tmp / "before"), "now": ROOT}
    rows = [(32, 2, "vgg19")] if _SMOKE.value else [r for r in ROWS if str(r[0]) in _ROWS.value]
    for size, batch, arch in rows:
      for objective in _OBJECTIVES.value:
        spec = dict(seed=0, size=size, batch=batch, iterations=_ITERATIONS.value, chunk=5,
                    width=1.0, taps=["conv3_1", "conv4_1", "conv5_1"], tv_weight=0.001,
                    tv_beta=2.0, architecture=arch, objective=objective, torch_threads=0,
                    xla_flags="")
        if _SMOKE.value:
          spec.update(width=1 / 16, taps=["conv2_1", "conv3_1"], iterations=4, chunk=2)
        row = dict(size=size, batch=batch, architecture=arch, objective=objective,
                   uptime=uptime())
        row["peer"] = run_worker(dict(spec, solver="torch"), ROOT)
        for name, tree in trees.items():
          r = run_worker(dict(spec, solver=DEFAULT_SOLVER), tree)
          if "error" not in r and "error" not in row["peer"]:
            points = r["trajectory"] + [(r["wall_s"], r["iterations"], r["loss"])]
            reach = solvers.time_to_loss(points, row["peer"]["loss"])
            r["to_peer_s"] = reach
            r["vs_peer"] = None if reach is None else reach / row["peer"]["wall_s"]
          row[name] = r
        record["rows"].append(row)
        print(f"{size}² × {batch} {arch} {objective}: peer {per_eval(row['peer'])}; "
              f"before {per_eval(row['before'])}; now {per_eval(row['now'])}", flush=True)
    if _DEMO.value != "off":
      for run in ("first", "second"):
        for name, tree in trees.items():
          cache = tmp / f"cache_{name}"
          if run == "first" and _DEMO.value == "warm":
            run_demo(tree, tmp / f"demo_{name}_warmup", cache)
            continue
          record["demo"][f"{name}_{run}"] = r = run_demo(tree, tmp / f"demo_{name}_{run}", cache)
          print(f"demo {name} {run}: {r.get('wall_s', r.get('error'))} ({r['uptime']})",
                flush=True)
  record["uptime_end"] = uptime()
  lines = [f"research.speed_table, baseline {_BASELINE.value}, {_ITERATIONS.value} iterations; "
           f"{record['uptime_start']}", "",
           "| row | objective | torch peer | before | now |", "|---|---|---|---|---|"]
  for r in record["rows"]:
    lines.append(f"| {r['size']}² × {r['batch']} {r['architecture']} | {r['objective']} | "
                 f"{per_eval(r['peer'])} | {per_eval(r['before'])} | {per_eval(r['now'])} |")
  for key, r in record["demo"].items():
    lines.append(f"\ndemo {key}: " + (f"{r['wall_s']:.0f} s, timings "
                                      f"{ {k: round(v, 1) for k, v in r['timings'].items()} }"
                                      if "wall_s" in r else str(r.get("error"))))
  for name in ("before", "now"):
    first, second = record["demo"].get(f"{name}_first"), record["demo"].get(f"{name}_second")
    if first and second and "wall_s" in first and "wall_s" in second:
      lines.append(f"{name}: second demo run / first = {second['wall_s'] / first['wall_s']:.2f}")
  lines.append(record["uptime_end"])
  print("\n".join(lines))
  if _JSON.value:
    Path(_JSON.value).write_text(json.dumps(record, indent=1, default=str) + "\n")


if __name__ == "__main__":
  app.run(main)
