"""research/lost_pairs.py: the judge's lost 2AFC pairs are the ones drawn, with the right reason.

Run as its command only: the module defines absl flags (--workdir) that the run commands' own
would clash with in the test process."""

import json
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

from dfi_jax.outputs import names as output_names

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _row(image, attribute, prefers, keeps=1.0, p=0.99, pixel_p=1.0, changed=""):
  return dict(image=image, attribute=attribute, delta=3.5, judge_prefers_dfi=prefers,
              judge_preservation=keeps, judge_probability=p, judge_changed=changed,
              baseline_judge_preservation=1.0, baseline_judge_success=1.0,
              baseline_judge_probability=pixel_p)


def _run(tmp_path):
  rows = [_row("a", "older", 1.0, p=1.0, pixel_p=0.9),
          _row("b", "moustache", 0.0, keeps=0.8, p=1.0, changed="smiling"),
          _row("c", "eyeglasses", 0.0, p=0.99631, pixel_p=1.0),
          _row("d", "older", 0.5, p=1.0, pixel_p=1.0)]
  for r in rows:
    files = [f"originals/{r['image']}.png",
             output_names.edit_name(r["image"], r["attribute"], r["delta"]),
             output_names.output_name(r["image"], r["attribute"], "pixel", folder="baselines")]
    for shade, name in enumerate(files):
      (tmp_path / name).parent.mkdir(exist_ok=True)
      Image.fromarray(np.full((8, 8, 3), 60 * shade, np.uint8)).save(tmp_path / name)
  (tmp_path / "metrics.json").write_text(json.dumps(dict(per_image=rows)))
  return rows


def _lost_pairs(workdir, *flags):
  return subprocess.run([sys.executable, "-m", "research.lost_pairs", f"--workdir={workdir}",
                         *flags], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_only_pairs_dfi_did_not_win_are_drawn_with_the_judge_s_reason(tmp_path):
  _run(tmp_path)
  proc = _lost_pairs(tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  # a tie (d, 0.5) is not a win; a (1.0) is not drawn
  assert "1 of 4 pairs to DFI; drawn: 3" in proc.stdout
  assert "b moustache: DFI changed smiling" in proc.stdout
  assert "c eyeglasses: p DFI 0.99631 vs pixel 1.00000" in proc.stdout
  assert "d older: p DFI 1.00000 vs pixel 1.00000" in proc.stdout
  assert "a older" not in proc.stdout
  grid = np.asarray(Image.open(tmp_path / "lost_pairs.png"))
  # Three rows of input | DFI | pixel under a header row: the DFI column of each row is the
  # edit's shade (60), its pixel column the baseline's (120).
  assert grid.shape[0] > 3 * 192 and grid.shape[1] > 3 * 192
  middle = grid[grid.shape[0] - 96, :, 0]
  assert {60, 120} <= set(np.unique(middle).tolist())
  every = _lost_pairs(tmp_path, "--all", f"--out={tmp_path / 'all.png'}", "--tile=16")
  assert every.returncode == 0 and "4 of 4 pairs judged; drawn: 4" in every.stdout
  assert "a older: p DFI 1.00000 vs pixel 0.90000" in every.stdout
  assert np.asarray(Image.open(tmp_path / "all.png")).shape[0] < grid.shape[0]


def test_a_run_without_judged_pairs_is_one_line(tmp_path):
  (tmp_path / "metrics.json").write_text(json.dumps(dict(per_image=[dict(image="a")])))
  proc = _lost_pairs(tmp_path)
  assert proc.returncode == 1
  assert "has no judged pairs" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "lost_pairs.png").exists()
