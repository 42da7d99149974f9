"""Training VGG19-architecture weights on generated faces (the random test weights; research).

  python -m experiments.train_features --out=dfi_jax/assets/random_vgg19_quarter.npz --overwrite --config.steps=0
  python -m experiments.train_features --out=/tmp/w.npz --config=experiments/configs/features.py:tiny

`steps=0` writes He-initialised random weights. Variants: `default`, `tiny` (tests, seconds).
"""

import ml_collections

from dfi_jax.configs import variants

# Each variant's fields that differ from get_config's; the first is the default.
VARIANTS = {
    "default": {},
    "tiny": dict(image_size=32, pool_size=16, width=0.0625, steps=3, batch_size=4),
}


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.image_size = 64
  c.pool_size = 3000
  c.pool_seed = 20_000_000  # disjoint from the demo's bank (0…) and test (10,000,000…) seeds
  c.width = 0.25
  c.taps = ("conv3_1", "conv4_1", "conv5_1")
  c.objective = "both"
  c.steps = 3000
  c.batch_size = 32
  c.learning_rate = 1e-3
  c.shift = 4
  c.noise = 0.02
  c.adv_epsilon = 0.0
  c.adv_steps = 3
  c.seed = 0
  c.store_dtype = "float16"
  return variants.apply(c, arg, "features.py", VARIANTS)
