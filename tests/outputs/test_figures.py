"""Grids (PNG with labels) and the static HTML index: dfi_jax/outputs/figures.py."""

import numpy as np
import pytest

from dfi_jax.outputs import figures
from dfi_jax.data.image_io import load_image


def test_make_grid_shapes_and_ragged_rows():
  t = np.zeros((5, 7, 3), np.float32)
  g = figures.make_grid([[t, t, t], [t]], pad=2, background=1.0)
  assert g.shape == (2 + 2 * (5 + 2), 2 + 3 * (7 + 2), 3) and g.dtype == np.float32
  assert g[2:7, 2:9].max() == 0.0 and g[9:14, 11:18].min() == 1.0  # missing tile = background
  assert figures.make_grid([[t]], pad=0).shape == (5, 7, 3)
  with pytest.raises(ValueError, match="shape"):
    figures.make_grid([[t, np.zeros((5, 8, 3))]])


def test_save_grid_with_labels(tmp_path):
  t = np.full((16, 24, 3), 0.5, np.float32)
  p = tmp_path / "grid.png"
  figures.save_grid(p, [[t, t], [t]], row_labels=["source", "smile ☺ ünï"],
                    col_labels=["a", "a very long column label indeed"])
  x = load_image(p)
  plain = figures.make_grid([[t, t], [t]])
  assert x.shape[0] > plain.shape[0] and x.shape[1] > plain.shape[1]
  assert x.min() < 0.1  # some black text was drawn
  with pytest.raises(ValueError, match="row labels"):
    figures.save_grid(p, [[t]], row_labels=["a", "b"])


def test_write_index_html_escapes(tmp_path):
  p = tmp_path / "index.html"
  figures.write_index_html(p, "DFI <b>results</b>", [
      {"heading": "Smile & age", "text": "two\nlines",
       "figures": [{"src": "figs/a b.png", "caption": "<script>alert(1)</script>"}],
       "table": {"columns": ["attr", "<i>score</i>"], "rows": [["x", 0.5]]}},
      {"heading": "empty"}])
  s = p.read_text(encoding="utf-8")
  assert "<script>" not in s and "&lt;script&gt;alert(1)&lt;/script&gt;" in s
  assert "<b>" not in s and "<i>" not in s and "Smile &amp; age" in s
  assert 'src="figs/a%20b.png"' in s and "<td>0.5</td>" in s
  with pytest.raises(ValueError, match="heading"):
    figures.write_index_html(p, "t", [{"title": "typo"}])
