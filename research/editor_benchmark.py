"""How long the README's Python example and `make demo` take, cold and warm:
`python -m research.editor_benchmark [--demo] [--json_out=F]`.

Each measurement is its own process (so its peak RSS is its own), with the bank cache
(`dfi_jax/data/bank_cache.py`) in a fresh folder for the cold run and the same folder for the
warm one; the weights cache is the user's (the converted VGG16 is read, not made).

  load_editor cold / warm   `dfi_jax.load_editor()` with the default config
  edit                      `dfi_jax.edit(astronaut, "eyeglasses", 3.0, editor=…)` right after
                            (the 512² astronaut; includes the reverse map's compilation)
  peak RSS                  of that whole process
  demo first / second       `python -m experiments.transform --workdir=…` (what `make demo`
                            runs), with a fresh bank cache and then with the one it left

Not a test: timings depend on the machine and its load (print `uptime` beside them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app
from absl import flags

from dfi_jax.data import bank_cache

_DEMO = flags.DEFINE_bool("demo", False, "Also time `make demo`'s command twice (minutes).")
_JSON = flags.DEFINE_string("json_out", None, "Write the numbers here as JSON.")

_EDITOR = """
import json, resource, time
from skimage import data
import dfi_jax
t0 = time.perf_counter()
editor = dfi_jax.load_editor(progress=lambda *a: None)
t1 = time.perf_counter()
edited = dfi_jax.edit(data.astronaut(), "eyeglasses", 3.0, editor=editor,
                      progress=lambda *a: None)
t2 = time.perf_counter()
print("RESULT", json.dumps(dict(load_s=t1 - t0, edit_s=t2 - t1,
      phi_computed=editor.phi_rows.computed, phi_kept=len(editor.phi_rows.kept))))
"""


def _run(argv: list[str], cache: Path) -> tuple[float, float, str]:
  """Runs `argv` with the bank cache in `cache`; (wall seconds, peak RSS GB, stdout)."""
  env = dict(os.environ, **{bank_cache.OFF_ENV: str(cache)})
  t0 = time.perf_counter()
  proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True)
  out = proc.stdout.read()
  _, status, usage = os.wait4(proc.pid, 0)
  seconds = time.perf_counter() - t0
  if os.waitstatus_to_exitcode(status) != 0:
    raise RuntimeError(f"{argv} failed: {out[-2000:]}")
  return seconds, usage.ru_maxrss / 2**20, out  # ru_maxrss is in KiB on Linux


def _editor(cache: Path) -> dict:
  wall, rss, out = _run([sys.executable, "-c", _EDITOR], cache)
  result = json.loads(out.split("RESULT", 1)[1])
  return dict(result, process_s=wall, peak_rss_gb=rss)


def main(argv):
  del argv
  numbers = dict(uptime=subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
  with tempfile.TemporaryDirectory(prefix="editor_benchmark_") as tmp:
    cache = Path(tmp) / "cache"
    numbers["editor_cold"] = _editor(cache)
    print("cold:", json.dumps(numbers["editor_cold"]), flush=True)
    numbers["editor_warm"] = _editor(cache)
    print("warm:", json.dumps(numbers["editor_warm"]), flush=True)
    if _DEMO.value:
      demo_cache = Path(tmp) / "demo_cache"
      for run in ("demo_first", "demo_second"):
        wall, rss, _ = _run([sys.executable, "-m", "experiments.transform",
                             f"--workdir={Path(tmp) / run}"], demo_cache)
        numbers[run] = dict(wall_s=wall, peak_rss_gb=rss)
        print(f"{run}:", json.dumps(numbers[run]), flush=True)
      numbers["demo_second_over_first"] = (numbers["demo_second"]["wall_s"]
                                           / numbers["demo_first"]["wall_s"])
  numbers["uptime_after"] = subprocess.run(["uptime"], capture_output=True,
                                           text=True).stdout.strip()
  print(json.dumps(numbers, indent=2))
  if _JSON.value:
    Path(_JSON.value).write_text(json.dumps(numbers, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
