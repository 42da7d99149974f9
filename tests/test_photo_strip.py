"""tools/photo_strip.py: the docs' photo strips, crops of a transform run's full-size outputs."""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import photo_strip  # noqa: E402


def _save(path: Path, image: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image).save(path)


def test_the_strip_holds_the_input_and_each_edit_cropped_around_the_centre(tmp_path):
  rng = np.random.default_rng(0)
  photo = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
  edit = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
  _save(tmp_path / "run" / "originals" / "me.png", photo)
  _save(tmp_path / "run" / "edits" / "me__smiling__d3.5.png", edit)
  out = tmp_path / "strip.png"
  assert photo_strip.main([f"--run={tmp_path / 'run'}", "--photo=me", "--center=30,14",
                           "--side=8", "--attributes=smiling", f"--out={out}"]) == 0
  assert out.is_file()
  np.testing.assert_array_equal(photo_strip.crop(photo, (30, 14), 8), photo[10:18, 26:34])
  strip = np.asarray(Image.open(out).convert("RGB"))
  assert strip.shape[1] >= 2 * 8  # two tiles side by side under their labels


def test_a_missing_edit_or_a_square_outside_the_photo_is_one_error_line(tmp_path, capsys):
  _save(tmp_path / "run" / "originals" / "me.png", np.zeros((40, 50, 3), np.uint8))
  out = tmp_path / "strip.png"
  assert photo_strip.main([f"--run={tmp_path / 'run'}", "--photo=me", "--center=30,14",
                           "--side=8", "--attributes=smiling", f"--out={out}"]) == 1
  assert "me__smiling__d3.5.png: no such file" in capsys.readouterr().err
  assert photo_strip.main([f"--run={tmp_path / 'run'}", "--photo=me", "--center=48,14",
                           "--side=8", "--attributes=", f"--out={out}"]) == 1
  assert "leaves the 50×40 image" in capsys.readouterr().err
  assert not out.exists()
