"""`python -m experiments.serve`: the address and the temporary folder printed, a one-line
warning for a non-local --host, and SIGTERM removes the folder (exit 130, no traceback)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lines_until(process, pattern: str, timeout: float = 120.0) -> list[str]:
  """stdout lines up to the first matching `pattern`."""
  lines, end = [], time.monotonic() + timeout
  while time.monotonic() < end:
    line = process.stdout.readline()
    if not line:
      break
    lines.append(line.rstrip("\n"))
    if re.search(pattern, line):
      return lines
  raise AssertionError(f"no line matching {pattern!r} in {lines}; stderr: {process.stderr.read()}")


def test_sigterm_removes_the_temporary_folder(tmp_path):
  process = subprocess.Popen(
      [sys.executable, "-m", "experiments.serve", "--config=experiments/configs/synthetic.py:tiny",
       "--port=0", "--host=0.0.0.0", "--nosweep"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env={**os.environ, "TMPDIR": str(tmp_path)})
  try:
    lines = _lines_until(process, r"^temporary folder: ")
    assert lines[0].startswith("warning: --host=0.0.0.0: anyone who can reach this computer")
    port = re.search(r"open http://0\.0\.0\.0:(\d+)/", lines[1]).group(1)
    folder = Path(re.match(r"temporary folder: (\S+) ", lines[2]).group(1))
    assert folder.parent == tmp_path and folder.is_dir()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/samples/astronaut",
                                     data=b"", method="POST")
    photo = json.load(urllib.request.urlopen(request, timeout=60))
    assert len(photo["faces"]) == 1 and any(folder.iterdir())  # the photo's PNG is in it
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
  finally:
    if process.poll() is None:
      process.kill()
  assert process.returncode == 130
  assert "Traceback" not in stderr
  assert stderr.strip().splitlines()[-1] == (
      "interrupted (SIGTERM): the server stopped; its temporary folder was removed")
  assert not folder.exists()


def test_a_port_in_use_is_one_line_before_anything_loads():
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "experiments.serve", f"--port={port}"], cwd=ROOT,
        capture_output=True, text=True, timeout=120)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      f"error: ValueError: --host=127.0.0.1 --port={port}: cannot listen there (Address already "
      "in use); pick another --port")
  assert "temporary folder" not in done.stdout
