"""High-resolution editing of generated faces (paper Fig. 4, official demo2 settings).

  python -m experiments.highres --workdir=runs/highres                       # 512², older + moustache
  python -m experiments.highres --workdir=runs/hr1k --config.image_size=1024
  python -m experiments.highres --workdir=runs/t --config=experiments/configs/highres.py:tiny

demo2 used K = 100 of 400 landmark-re-ranked candidates, δ = 3.5 with `none` scaling; the
defaults here are smaller (K = 25 of 100) to fit a 2-core CPU.
"""

from dfi_jax.configs import variants
from experiments.configs import synthetic

# Each variant's fields that differ from get_config's; the first is the default.
VARIANTS = {
    "demo": {},
    "tiny": dict(bank_size=40, image_size=64, k=2, rerank=4, iterations=3),
}


def get_config(arg: str = "demo"):
  c = synthetic.derived(arg, "highres.py", VARIANTS)
  synthetic.global_reverse_map(c)
  c.attributes = ("older", "moustache")
  c.scaling = "none"
  c.deltas = (3.5,)
  c.num_test = 1
  c.bank_size = 800  # candidates re-ranked by landmarks, rendered at the high resolution
  c.image_size = 512
  c.k = 25
  c.rerank = 100
  c.iterations = 150
  return variants.apply(c, arg, "highres.py", VARIANTS)
