"""DFI on the embedded default: procedural faces and the project's own VGG19-architecture weights.

  python -m experiments.transform --workdir=runs/demo                      # the demo (make demo)
  python -m experiments.transform --workdir=runs/t --config=experiments/configs/synthetic.py:tiny
  python -m experiments.evaluate  --workdir=runs/eval --config=experiments/configs/synthetic.py:eval

Variants: `demo` (default; 3 faces x 6 edits, ~4-6 min on 2 CPU cores), `tiny` (tests: seconds),
`eval` (the README's quality table: 8 held-out faces per attribute).
"""

import ml_collections

from dfi_jax import faces


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.variant = arg or "demo"
  c.seed = 0
  # Data: a bank of generated faces (seeds [bank_seed, bank_seed + bank_size)) and held-out test
  # faces drawn from seeds >= test_seed that lack all six attributes, so each edit adds one.
  c.data = "synthetic"
  c.image_size = 64
  c.bank_size = 800
  c.bank_seed = 0
  c.test_seed = 10_000_000
  c.num_test = 3
  c.attributes = faces.ATTRIBUTES
  # Features: '' = the embedded default weights shipped in dfi_jax/assets/.
  c.weights = ""
  c.taps = ("conv3_1", "conv4_1", "conv5_1")
  c.pooling = ""  # '' = as recorded in the weights file
  c.preprocessing = ""
  c.feature_batch = 32
  # Neighbours and attribute vector.
  c.neighbours = "attributes"  # attributes (official Hamming) | features (φ-space KNN)
  c.k = 100
  c.scaling = "mean_square"
  c.deltas = (0.4,)
  # Reverse map.
  c.tv_weight = 0.001  # λ for TV in 0-255 units (the paper's units)
  c.tv_beta = 2.0
  c.iterations = 500  # first δ
  c.next_iterations = 250  # each further δ, warm-started from the previous result
  c.solver = "jaxopt_lbfgsb"
  c.linesearch = "backtracking"
  c.linesearch_init = "max"
  c.batch_size = 18  # reverse maps per compiled call
  c.chunk = 25
  # Pixel-space baseline: x + δ·(mean target pixels − mean source pixels), best δ reported.
  c.pixel_deltas = (0.25, 0.5, 0.75, 1.0)
  c.pixel_delta_photos = 1.0
  # Automatic proxy of the perceptual study: linear attribute probes on 16² pixels ('' = off).
  c.probe = "pixels"  # own photos have no counterfactual to pick δ with

  if c.variant == "tiny":
    c.image_size = 32
    c.bank_size = 40
    c.num_test = 2
    c.k = 5
    c.taps = ("conv2_1", "conv3_1")
    c.iterations = 4
    c.next_iterations = 2
    c.deltas = (0.4, 0.8)
    c.chunk = 2
    c.feature_batch = 16
  elif c.variant == "eval":
    c.num_test = 8
  elif c.variant != "demo":
    raise ValueError(f"unknown variant {arg!r} of synthetic.py; expected demo, tiny or eval")
  return c
