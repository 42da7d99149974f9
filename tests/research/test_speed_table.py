"""research/speed_table.py: the #28 table's command, on a tiny smoke problem (no timing asserts)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_smoke_table_has_peer_before_and_now(tmp_path):
  out = tmp_path / "table.json"
  proc = subprocess.run([sys.executable, "-m", "research.speed_table", "--smoke", "--demo=off",
                         "--baseline=HEAD", "--objectives=product",
                         f"--json_out={out}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  record = json.loads(out.read_text())
  assert [r["objective"] for r in record["rows"]] == ["product"]
  for row in record["rows"]:
    for who in ("peer", "before", "now"):
      assert "error" not in row[who], row[who]
      assert row[who]["objective"] == row["objective"] and row[who]["iterations"] == 4
    # The same problem in both trees (HEAD vs the working tree): the same start.
    assert row["before"]["start_loss"] == row["now"]["start_loss"]
  assert "| 32² × 2 vgg19 | product |" in proc.stdout
