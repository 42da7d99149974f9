"""Coarse to fine against the full-size solve: `python -m research.coarse_to_fine`.

  --size=64 --batch=18 --architecture=vgg16 --objective=product   the demo's problem (default)
  --coarse=25,50        half-size iterations tried before the full-size solve
  --iterations=100      full-size iterations (the reference solve and after each coarse start)
  --rounds=2            the reference and each coarse variant alternate, `rounds` times
  --peer                also run the torch peer once (its 100-iteration loss is a goal)

Coarse to fine (dfi_jax/dfi/coarse_to_fine.py; in a run `coarse_iterations`): solve at half
the size, then carry the change up to full size as the full-size solve's start. Every solve here is timed from its start, coarse stage included, and the losses read
every chunk are scored against the full-size solve's final loss (and the peer's).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import time

from absl import app
from absl import flags

import numpy as np

_SIZE = flags.DEFINE_integer("size", 64, "Image side.")
_BATCH = flags.DEFINE_integer("batch", 18, "Images.")
_ARCH = flags.DEFINE_string("architecture", "vgg16", "vgg16 or vgg19.")
_OBJECTIVE = flags.DEFINE_string("objective", "product", "plain or product.")
_COARSE = flags.DEFINE_list("coarse", ["25", "50"], "Half-size iterations to try.")
_ITERATIONS = flags.DEFINE_integer("iterations", 100, "Full-size iterations.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds.")
_PEER = flags.DEFINE_bool("peer", False, "Run the torch peer once for its loss.")
_WIDTH = flags.DEFINE_float("width", 1.0, "VGG width (1 = full; smaller for smoke runs).")
_JSON = flags.DEFINE_string("json_out", "", "Write the results here.")


def main(argv):
  del argv
  import jax
  from dfi_jax.dfi import coarse_to_fine
  from dfi_jax.dfi import reconstruct
  from research import solvers
  uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
  spec = dict(seed=0, size=_SIZE.value, batch=_BATCH.value, width=_WIDTH.value,
              architecture=_ARCH.value, taps=["conv3_1", "conv4_1", "conv5_1"],
              tv_weight=0.002, tv_beta=2.0, objective=_OBJECTIVE.value, iterations=100,
              chunk=25)
  p = solvers.make_problem(spec)
  config = dataclasses.replace(p["base"], solver="optax_lbfgs", linesearch="none", chunk=25)
  full = reconstruct.ReverseMap(p["net"], p["fspec"], config)
  record = dict(spec=spec, uptime_start=uptime(), runs=[])
  if _PEER.value:
    out = solvers.run_torch(dict(spec, torch_threads=0), p)
    record["peer"] = dict(loss=float(np.mean(p["losses"](out["images"]))), wall_s=out["wall_s"])
    print(f"peer: {record['peer']}", flush=True)
  half_spec, half_targets, half_start = coarse_to_fine.half_problem(
      p["net"], p["params"], p["fspec"], p["targets"], p["start"])
  half = reconstruct.ReverseMap(p["net"], half_spec, config)

  def solve(coarse: int) -> dict:
    trajectory = []
    t0 = time.perf_counter()
    z0, u0 = p["start"], None
    if coarse:
      result = half(p["params"], half_targets, half_start, coarse)
      z0, u0 = coarse_to_fine.upsample_start(result, half_start, p["start"], config)
      trajectory.append((time.perf_counter() - t0, 0, float("nan")))
    result = full(p["params"], p["targets"], z0, _ITERATIONS.value, start=u0,
                  on_chunk=lambda done, loss: trajectory.append(
                      (time.perf_counter() - t0, done, float(np.mean(loss)))))
    wall = time.perf_counter() - t0
    loss = float(np.mean(p["losses"](result.images)))
    return dict(coarse=coarse, wall_s=wall, loss=loss, trajectory=trajectory)

  variants = [0] + [int(c) for c in _COARSE.value]
  full(p["params"], p["targets"], p["start"], 25)  # compile every program once, untimed
  half(p["params"], half_targets, half_start, 25)
  for _ in range(_ROUNDS.value):
    for coarse in variants:
      run = solve(coarse)
      record["runs"].append(run)
      print(f"coarse {coarse:3d}: {run['wall_s']:.1f} s, loss {run['loss']:.6g}; "
            + ", ".join(f"{d}:{l:.5g}@{t:.0f}s" for t, d, l in run["trajectory"]), flush=True)
  record["uptime_end"] = uptime()
  reference = statistics.median(r["loss"] for r in record["runs"] if r["coarse"] == 0)
  goals = {"full-size 100-iteration loss": reference}
  if "peer" in record:
    goals["peer's 100-iteration loss"] = record["peer"]["loss"]
  print(f"{_SIZE.value}² × {_BATCH.value}, {_ARCH.value}, {_OBJECTIVE.value}; "
        f"{record['uptime_start']} … {record['uptime_end']}")
  for coarse in variants:
    runs = [r for r in record["runs"] if r["coarse"] == coarse]
    line = (f"  coarse {coarse:3d}: wall {statistics.median(r['wall_s'] for r in runs):.1f} s, "
            f"loss {statistics.median(r['loss'] for r in runs):.6g}")
    for name, goal in goals.items():
      reach = [solvers.time_to_loss(r["trajectory"] + [(r["wall_s"], None, r["loss"])], goal)
               for r in runs]
      line += f"; to {name} " + "/".join("—" if t is None else f"{t:.0f}" for t in reach) + " s"
    print(line)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(record, f, indent=1)


if __name__ == "__main__":
  app.run(main)
