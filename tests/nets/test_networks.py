"""The network table: a toy second network, added in this one file (its module and one
`NETWORKS` entry), edits through the same pipeline as VGG; every reverse-map setting is
reachable (and checked) from a run config."""

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfi_jax.configs import synthetic
from dfi_jax.dfi import pipeline
from dfi_jax.dfi import reconstruct
from dfi_jax.nets import networks
from dfi_jax.nets import weights as weights_lib
from dfi_jax.runs import kit


class Toy(nn.Module):
  """Two taps: a 3×3 conv (`t1`), then 2× average pooling and another conv (`t2`)."""
  taps: Sequence[str] = ("t1", "t2")
  architecture: str = "toy"

  @nn.compact
  def __call__(self, images):
    x = (images - 0.5) * 2.0  # its own preprocessing, inside the module (the contract)
    out = {"t1": nn.relu(nn.Conv(4, (3, 3), name="c1")(x))}
    pooled = nn.avg_pool(out["t1"], (2, 2), (2, 2))
    out["t2"] = nn.relu(nn.Conv(6, (3, 3), name="c2")(pooled))
    return {t: out[t] for t in self.taps}


TOY = networks.Network(
    build=lambda provenance, taps, pooling, preprocessing: Toy(taps=tuple(taps)),
    taps=("t1", "t2"), min_image_size=lambda taps, pooling: 2 if "t2" in taps else 1)
PROVENANCE = dict(architecture="toy", width=1.0, pooling="floor", preprocessing="torchvision",
                  layers=["t1", "t2"], description="a toy network")


def test_a_toy_second_network_edits_through_the_same_pipeline(monkeypatch):
  monkeypatch.setitem(networks.NETWORKS, "toy", TOY)
  net = weights_lib.model_for(PROVENANCE, taps=("t1", "t2"))
  assert isinstance(net, Toy)
  params = net.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
  pipe = pipeline.make(net, params, 16, reconstruct.ReverseMapConfig(
      tv_weight=1e-5, linesearch="none", chunk=2))  # fast_backward on: the toy has no kernels
  assert pipe.spec.taps == ("t1", "t2") and pipe.spec.dim == 16 * 16 * 4 + 8 * 8 * 6
  x = np.random.default_rng(0).uniform(0.2, 0.8, (2, 16, 16, 3)).astype(np.float32)
  w = np.random.default_rng(1).standard_normal((2, pipe.spec.dim)).astype(np.float32)
  edited = pipeline.edit(pipe, x, lambda phi_x: [w], [1.0], [4], scaling="unit", batch_size=2)
  assert edited.edits.finite.all()
  assert np.abs(edited.edits.images[0] - x).max() > 1e-3  # the reverse map moved the images
  with pytest.raises(weights_lib.WeightsError, match="its convs are t1, t2"):
    weights_lib.model_for(PROVENANCE, taps=("conv3_1",))


def test_an_unknown_architecture_names_the_table():
  with pytest.raises(ValueError, match=r"unknown network architecture 'resnet'.*'vgg16'"):
    weights_lib.model_for(dict(PROVENANCE, architecture="resnet"), taps=("t1",))


NEW = dict(tv_epsilon=0.01, history=7, maxls=3, c2=0.5, scale_first_step=True,
           fast_backward=False, remat=True, joint=True)


def test_every_reverse_map_field_is_reachable_from_the_run_config():
  config = synthetic.get_config("tiny")
  fields = {f.name for f in dataclasses.fields(reconstruct.ReverseMapConfig)} - {"where"}
  assert fields <= set(config)  # each one a run config field
  defaults = kit.reverse_map_config(config)
  assert defaults == reconstruct.ReverseMapConfig(  # the defaults are the dataclass's
      tv_weight=config.tv_weight, tv_beta=config.tv_beta, solver=config.solver,
      linesearch=config.linesearch, linesearch_init=config.linesearch_init, chunk=config.chunk,
      chroma_scale=config.chroma_scale, where=defaults.where)
  for name, value in NEW.items():
    config[name] = value
  chosen = kit.reverse_map_config(config)
  assert {name: getattr(chosen, name) for name in NEW} == NEW
  kit.validate(config)


@pytest.mark.parametrize("field, bad, expected", [
    ("history", 0, "a positive integer"), ("maxls", -2, "a positive integer"),
    ("c2", 0.0, r"a finite number > 0 and <= 1"), ("c2", 1.5, r"a finite number > 0 and <= 1"),
    ("tv_epsilon", -1.0, "ε > 0")])
def test_a_bad_solver_setting_is_one_line_naming_its_flag(field, bad, expected):
  config = synthetic.get_config("tiny")
  with config.unlocked():
    config[field] = bad
  with pytest.raises(kit.RunError, match=rf"^--config\.{field}=.*: expected {expected}"):
    kit.validate(config)


def test_the_solver_table_names_every_solver_a_config_may_choose():
  assert reconstruct.SOLVERS == tuple(reconstruct.SOLVER_TABLE) == ("jaxopt_lbfgsb",
                                                                   "optax_lbfgs")
  assert kit.RULES["solver"].ok("optax_lbfgs") and not kit.RULES["solver"].ok("adam")
