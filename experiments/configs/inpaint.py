"""Inpainting (paper Figs 5-6, official demo3 settings: δ = 2.8, a centre hole of half the side).

  python -m experiments.inpaint --workdir=runs/inpaint                    # generated faces
  python -m experiments.inpaint --workdir=runs/shoes --config=experiments/configs/inpaint.py:shoes \
      --config.bank_dir=~/ut-zap50k-images-square                        # your folder of shoes
  python -m experiments.inpaint --workdir=runs/pshoes \
      --config=experiments/configs/inpaint.py:shoes_procedural            # drawn shoes (docs/)
  python -m experiments.inpaint --workdir=runs/m --config.hole_mask=my_mask.png   # white = hole

Variants:
  demo              4 held-out generated faces, bank of 800 (the `synthetic` demo's settings).
  tiny              the same at 32², a few iterations (tests).
  shoes             a folder of images (`data = "images"`): `bank_dir` (required) holds the bank,
                    read recursively in sorted order; test images from `test_dir`, or else
                    `num_test` images spread through the listing and held out of the bank.
                    Images are fitted into `image_size`² (`fit`: pad with the border colour |
                    crop | stretch). For the official demo3 use ported ImageNet weights and
                    `--config.image_size=200 --config.taps=conv3_1,conv4_1,conv5_1
                    --config.scaling=mean_square --config.iterations=500`.
  shoes_procedural  `shoes` on 600 PROCEDURAL shoes (dfi_jax.data.shoes) drawn into the workdir:
                    docs/inpaint_shoes.png.
  shoes_tiny        40 procedural shoes at 32², a few iterations (tests; seconds).
"""

from experiments.configs import synthetic

VARIANTS = ("demo", "tiny", "shoes", "shoes_procedural", "shoes_tiny")


def get_config(arg: str = "demo"):
  # The variants combine a family (faces or shoes) and a size (tiny or not), so they are set
  # below as code rather than as a table of fields (dfi_jax/configs/variants.py).
  c = synthetic.derived(arg, "inpaint.py", VARIANTS)
  variant = c.variant
  synthetic.global_reverse_map(c)
  if not variant.endswith("tiny"):
    # The hole's neighbours are found by φ over the whole bank (attributes say nothing about
    # the hole), so the bank stays small.
    c.bank_size = 800
  c.hole_fraction = 0.5  # demo3: [50:150, 50:150] of 200²
  c.hole_mask = ""  # a mask image (white = hole) instead of the centre square
  c.deltas = (2.8,)
  c.num_test = min(c.num_test, 4)
  c.grid_scale = 1  # grid.png tiles enlarged this many times (nearest neighbour)
  # A folder of images (data = "images").
  c.bank_dir = ""
  c.test_dir = ""  # '' = hold num_test images of bank_dir out of the bank
  c.fit = "pad"
  c.procedural_shoes = 0  # > 0 with no bank_dir: draw this many shoes into the workdir
  c.procedural_width = 136  # UT-Zappos50K's width (its images are 136 × 102)
  if variant.startswith("shoes"):
    c.data = "images"
    c.num_test = 4
    # The official λ: on the procedural shoes with the embedded weights (200 iterations) it
    # measured hole RMSE 0.185 against 0.210 at the faces demo's λ = 1e-5 (less colour noise).
    c.tv_weight = 1e-3
  if variant == "shoes_procedural":
    c.procedural_shoes = 600
    c.iterations = 200
  elif variant == "shoes_tiny":
    c.procedural_shoes = 40
    c.procedural_width = 48
    c.num_test = 2
    c.tv_weight = 1e-5  # as the faces' tiny variant: tests reuse its compiled solver
  return c
