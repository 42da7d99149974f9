"""Make VGG19-architecture feature weights: `python -m experiments.train_features --out=FILE`.

Trains on generated faces (see dfi_jax/nets/train.py) and writes a native weights file whose
provenance records the command, every setting and the final losses.
"""

import shlex
import sys

import jax
from tqdm import tqdm

from dfi_jax.base import run_state
from dfi_jax.nets import train
from dfi_jax.nets import weights
from experiments import cli

_CONFIG = cli.define_config_file(
    "experiments/configs/features.py", "Config file (FILE or FILE:variant).")
_OUT, _OVERWRITE = cli.define_output_file("Weights")

def main(argv):
  del argv  # cli.call_main refuses positional arguments
  c = run_state.split_lists(_CONFIG.value)
  run_state.check_config(c, train.CONFIG_RULES)
  out = cli.check_new_output(_OUT.value, _OVERWRITE.value)
  command = "python -m experiments.train_features " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  settings = c.to_dict()
  if c.steps == 0:
    params = weights.init_random(jax.random.key(c.seed), width=c.width)
    kind, description, summary = "random", f"VGG19 width {c.width:g}, random He init", {}
  else:
    seeds = range(c.pool_seed, c.pool_seed + c.pool_size)
    print(f"rendering {c.pool_size} training faces at {c.image_size}²", flush=True)
    pool = train.make_pool(seeds, c.image_size)
    tc = train.TrainConfig(width=c.width, taps=tuple(c.taps), objective=c.objective,
                           steps=c.steps, batch_size=c.batch_size,
                           learning_rate=c.learning_rate, shift=c.shift, noise=c.noise,
                           adv_epsilon=c.adv_epsilon, adv_steps=c.adv_steps, seed=c.seed)
    with tqdm(total=c.steps, desc="train", unit="step") as bar:
      def log(i, terms):
        bar.n = i + 1
        bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
      params, summary = train.train(tc, pool, log)
    kind = "trained"
    adv = f", L2-PGD ε={c.adv_epsilon:g}" if c.adv_epsilon > 0 else ""
    description = (f"VGG19 width {c.width:g} trained {c.steps} steps on generated "
                   f"{c.image_size}² faces ({c.objective}{adv}); not ImageNet weights")
  prov = weights.provenance_for(kind, description, command, params, width=c.width,
                                training=settings, training_summary=summary)
  weights.save_weights(out, params, prov, dtype=c.store_dtype)
  print(f"wrote {out}: {description}")


if __name__ == "__main__":
  cli.run_main(main)
