"""Fast mode's decoder (issue 7): D inverts φ on generated faces; the reverse map starts from it.

  python -m experiments.train_decoder --out=runs/decoder/decoder.npz            # ~10 min, 2 CPU cores
  python -m experiments.train_decoder --out=/tmp/d.npz --config=experiments/configs/decoder.py:tiny

  python -m experiments.train_decoder --out=runs/decoder/decoder_edits.npz \
      --config=experiments/configs/decoder.py:edits        # fine-tunes the first, ~8 min

Trains on the demo's bank (seeds [0, 800) at 64², the same faces `make demo` uses; the held-out
test faces, seeds >= 10,000,000, are never seen) against the default weights with the taps below
(conv1_2, conv3_1, conv5_1: those fast mode was measured with), so the file fits `--config.decoder=`
of an `experiments.transform` run with the same weights, taps and image size. Writes the
decoder `.npz` and `<out>.png` (held-out inputs over their decodings). Variants: `default`
(pixel L2, 1500 steps; the measured file used `--config.steps=500`: held-out pixel MSE 0.00083),
`edits` (fine-tunes `runs/decoder/decoder.npz` 120 steps on edit-like targets with the reverse
map's objective), `tiny` (tests: 32², two taps, a few steps, seconds).
"""

import ml_collections

from dfi_jax.configs import variants
from experiments.configs import synthetic

# Each variant's fields that differ from get_config's; the first is the default. `tiny` also
# takes φ's settings from synthetic.py:tiny (get_config).
VARIANTS = {
    "default": {},
    "edits": dict(init_from="runs/decoder/decoder.npz", feature_weight=1e-4, edit_delta=1.5,
                  steps=120, learning_rate=5e-4, save_every=40),
    "tiny": dict(pool_size=12, valid_size=4, channels=8, steps=6, batch_size=4, save_every=3),
}


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # φ to invert: must match the edit run's weights, taps and image size.
  c.weights = ""  # '' = the default ImageNet VGG16, 'random' = the random test weights
  c.taps = ("conv1_2", "conv3_1", "conv5_1")
  c.image_size = 64
  # Training faces: the demo's bank.
  c.pool_seed = 0
  c.pool_size = 800
  c.valid_seed = 30_000_000  # held-out faces for the validation loss and the preview PNG
  c.valid_size = 16
  # Decoder and optimiser.
  c.channels = 32
  c.steps = 1500
  c.batch_size = 16
  c.learning_rate = 2e-3  # Adam, cosine decay to 0
  # Weight of the reverse map's objective at D(t) (feature term + λ·TV, in the weights' units:
  # ~1e3 at init, ~1e2 trained, against pixel MSE ~1e-3); 0 = pixel L2 only.
  c.feature_weight = 0.0
  # > 0: train on edit-like targets φ(x) + δ·w, δ ~ U(0, edit_delta) (see decoder.py).
  c.edit_delta = 0.0
  c.tv_weight = 1e-5  # λ and β of the objective that feature_weight weighs
  c.tv_beta = 2.0
  c.init_from = ""  # a decoder file to fine-tune instead of a random init
  c.seed = 0
  c.save_every = 250  # steps between resume checkpoints (<out>.resume.npz)
  c = variants.apply(c, arg, "decoder.py", VARIANTS)
  if c.variant == "tiny":
    # φ of the tiny edit run (synthetic.py:tiny), which the tiny decoder is trained for.
    run = synthetic.get_config("tiny")
    for field in ("weights", "taps", "image_size"):
      c[field] = run[field]
  return c
