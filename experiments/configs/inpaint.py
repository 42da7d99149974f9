"""Inpainting generated faces (paper Figs 5-6, official demo3 settings: δ = 2.8, centre hole).

  python -m experiments.inpaint --workdir=runs/inpaint
  python -m experiments.inpaint --workdir=runs/t --config=experiments/configs/inpaint.py:tiny
  python -m experiments.inpaint --workdir=runs/m --config.hole_mask=my_mask.png   # white = hole
"""

from experiments.configs import synthetic


def get_config(arg: str = "demo"):
  c = synthetic.get_config(arg)
  c.hole_fraction = 0.5  # demo3: [50:150, 50:150] of 200²
  c.hole_mask = ""  # a mask image (white = hole) instead of the centre square
  c.deltas = (2.8,)
  c.num_test = min(c.num_test, 4)
  return c
