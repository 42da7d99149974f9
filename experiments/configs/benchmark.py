"""Reverse-map speed: dfi_jax's solvers against a PyTorch peer on the identical objective.

  python -m research.benchmark --json_out=runs/bench.json                  # 200², batch 1
  python -m research.benchmark --config=experiments/configs/benchmark.py:small   # 64², 1 and 8
  python -m research.benchmark --config=experiments/configs/benchmark.py:large   # 1000²
  python -m research.benchmark --config=experiments/configs/benchmark.py:tiny    # tests

The PyTorch peer (torch.optim.LBFGS) runs only where `import torch` works in `peer_python`
(default: this interpreter); torch is never a dependency of dfi_jax. `default` takes ~10-15 min
on 2 CPU cores (each run in its own process, so peak RSS is per run).

Solvers are names with optional ReverseMapConfig overrides, `name[:field=value,...]`:
  optax_lbfgs (the library default), jaxopt_lbfgsb, scipy (SciPy's L-BFGS-B driving a jitted
  JAX value-and-grad: a CPU reference, host round trip per evaluation), torch (the peer).
  e.g. `jaxopt_lbfgsb:linesearch=zoom,linesearch_init=increase`, `optax_lbfgs:fast_backward=0`.
"""

import ml_collections

from dfi_jax.configs import variants

HEADLINE_SOLVERS = (
    "torch",
    "jaxopt_lbfgsb",
    "jaxopt_lbfgsb:linesearch=zoom,linesearch_init=increase",
    "optax_lbfgs",
    "scipy",
)

# Each variant's fields that differ from get_config's; the first is the default.
VARIANTS = {
    "default": {},
    "small": dict(sizes=(64,), batch_sizes=(1, 8)),
    "large": dict(sizes=(1000,), iterations=10, chunk=5,
                  solvers=("torch", "jaxopt_lbfgsb", "jaxopt_lbfgsb:remat=1")),
    "tiny": dict(sizes=(32,), batch_sizes=(1, 2), iterations=4, chunk=2, width=1 / 16,
                 taps=("conv2_1", "conv3_1"),
                 solvers=("torch", "jaxopt_lbfgsb", "optax_lbfgs", "scipy"), timeout_s=300),
}


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.sizes = (200,)
  c.batch_sizes = (1,)
  c.iterations = 100
  c.solvers = HEADLINE_SOLVERS
  c.repeats = 1  # fresh processes per run; medians over repeats
  # plain: the paper's objective over the pixels; product: what the edit runs solve (the where
  # mask and coarse chroma, dfi_jax/dfi/where.py; measured at 1/4 resolution, the edit runs now
  # use 1/2). Each gets its peer.
  c.objectives = ("plain",)
  c.chunk = 5  # iterations between loss readings (time-to-loss resolution)
  # Network: full-width VGG with random weights (speed does not depend on the values). The
  # solver tables of docs/benchmarks.md were measured on VGG19; the default features are VGG16.
  c.architecture = "vgg19"
  c.width = 1.0
  c.taps = ("conv3_1", "conv4_1", "conv5_1")
  c.tv_weight = 0.001
  c.tv_beta = 2.0
  c.peer_python = ""  # interpreter with torch (and jax) for the peer; '' = this one
  c.torch_threads = 0  # 0 = torch's default
  c.xla_flags = ""  # extra XLA_FLAGS for the JAX runs
  c.timeout_s = 3600  # per run
  return variants.apply(c, arg, "benchmark.py", VARIANTS)
