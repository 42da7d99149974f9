"""Parameter sweeps: axis parsing and a tiny two-setting figure."""

import pytest
from PIL import Image

from dfi_jax.runs import sweep
from experiments.configs import synthetic


def test_parse_axis():
  assert sweep.parse_axis("tv_beta:1,1.5,2") == ("tv_beta", [1, 1.5, 2])
  for bad in ("tv_beta", "tv_beta:", ":1,2", "k:1,x"):
    with pytest.raises(ValueError, match="sweep axis"):
      sweep.parse_axis(bad)


def test_tiny_sweep_writes_a_labelled_figure(tmp_path):
  config = synthetic.get_config("tiny")
  config.num_test = 1
  config.deltas = (0.4,)
  figures = sweep.run_sweep(config, tmp_path, ("k", [3, 5]), attributes=["moustache"])
  assert [f.name for f in figures] == ["sweep_moustache.png"]
  figure = Image.open(figures[0])
  assert figure.width > 2 * 32 and figure.height > 32
  assert (tmp_path / "k=3" / "metrics.json").exists() and (tmp_path / "k=5" / "grid.png").exists()
  with pytest.raises(ValueError, match="not a config field"):
    sweep.run_sweep(config, tmp_path, ("nosuch", [1]))
