"""The default config, kept here as the path users pass: it is `dfi_jax/configs/synthetic.py`
(inside the package, so the library never imports experiments/); see that file's variants.

  python -m experiments.transform --workdir=runs/demo                      # the demo (make demo)
  python -m experiments.transform --workdir=runs/t --config=experiments/configs/synthetic.py:tiny
  python -m experiments.evaluate  --workdir=runs/eval --config=experiments/configs/synthetic.py:eval
"""

from dfi_jax.configs.synthetic import (derived, get_config, global_reverse_map,  # noqa: F401
                                        on_real_images)
