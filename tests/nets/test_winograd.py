"""Winograd F(4x4, 3x3) convolutions (nets/winograd.py) against XLA's direct convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi import reconstruct
from dfi_jax.nets import model as model_lib
from dfi_jax.nets import networks
from dfi_jax.nets import weights as weights_lib
from dfi_jax.nets import winograd


def _direct(x, kernel):
  return np.asarray(jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST))


@pytest.mark.parametrize("h,w", [(1, 1), (2, 3), (4, 4), (5, 7), (8, 8), (12, 13), (25, 9)])
def test_conv3x3_equals_the_direct_convolution(h, w):
  """Every output position, tiles that overhang the image included (sizes not a multiple of 4)."""
  rng = np.random.default_rng(h * 31 + w)
  x = jnp.asarray(rng.standard_normal((2, h, w, 5)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((3, 3, 5, 6)), jnp.float32)
  got = np.asarray(jax.jit(winograd.conv3x3)(x, winograd.kernel_transform(kernel)))
  want = _direct(x, kernel)
  assert got.shape == want.shape == (2, h, w, 6)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


def _wide_net(last_layer="conv4_2"):
  """A VGG16 of width 1/16: conv3_x have 16 channels, conv4_x and conv5_1 32."""
  params = weights_lib.init_random(jax.random.key(5), width=1 / 16, last_layer=last_layer,
                                   architecture="vgg16")
  return model_lib.VGG(taps=("conv3_1", last_layer), width=1 / 16,
                       architecture="vgg16"), params


def test_backward_kernels_transform_exactly_the_wide_layers():
  net, params = _wide_net("conv5_1")
  plain = model_lib.backward_kernels(params, winograd=False, min_share=16)
  assert all(set(v) == {"kernel_t"} for v in plain.values())
  wide = model_lib.backward_kernels(params, winograd=True, min_share=16)
  winograd_layers = {n for n, v in wide.items() if "kernel_w" in v}
  assert winograd_layers == {"conv4_2", "conv4_3", "conv5_1"}  # conv4_1 is 16 -> 32
  k = params["conv4_2"]["kernel"]
  np.testing.assert_allclose(np.asarray(wide["conv4_2"]["kernel_tw"]),
                             np.asarray(winograd.kernel_transform(model_lib.flip_kernel(k))))
  np.testing.assert_allclose(np.asarray(wide["conv4_2"]["kernel_w"]),
                             np.asarray(winograd.kernel_transform(k)))
  # The default threshold leaves a narrow network direct.
  assert not any("kernel_w" in v for v in model_lib.backward_kernels(params, winograd=True).values())


def test_winograd_pays_on_vggs_measured_layers():
  """research/winograd_layers.py: 64 -> 128 and wider gained, 64 -> 64 and 3 -> 64 lost."""
  assert [model_lib.winograd_pays(*c) for c in ((3, 64), (64, 64), (64, 128), (128, 128),
                                                (256, 512), (512, 512))] == [
      False, False, True, True, True, True]


def test_winograd_layers_give_the_same_features_and_input_gradients():
  net, params = _wide_net()
  x = jax.random.uniform(jax.random.key(6), (2, 21, 26, 3))  # conv4_x at 2x3
  wide = {"params": params,
          "backward": model_lib.backward_kernels(params, winograd=True, min_share=16)}

  def f(z, variables):
    return sum(jnp.sum(jnp.sin(v)) for v in net.apply(variables, z).values())

  direct_phi = jax.jit(net.apply)({"params": params}, x)
  wide_phi = jax.jit(net.apply)(wide, x)
  for tap in direct_phi:
    np.testing.assert_allclose(np.asarray(wide_phi[tap]), np.asarray(direct_phi[tap]),
                               rtol=0, atol=1e-4 * float(jnp.abs(direct_phi[tap]).max()))
  plain = np.asarray(jax.jit(jax.grad(f))(x, {"params": params}))
  got = np.asarray(jax.jit(jax.grad(f))(x, wide))
  np.testing.assert_allclose(got, plain, rtol=0, atol=1e-4 * np.abs(plain).max())


def test_reverse_map_setting_picks_the_convolutions():
  assert networks.use_winograd("auto") == (jax.default_backend() == "cpu")
  assert networks.use_winograd("on") and not networks.use_winograd("off")
  with pytest.raises(ValueError, match="winograd must be one of"):
    reconstruct.ReverseMapConfig(winograd="yes").validate()


def test_reverse_map_with_winograd_ends_where_the_direct_one_does(monkeypatch):
  """The solver's own variables carry the transforms (threshold lowered to this toy's 32
  channels), and 5 iterations end at the same images as with direct convolutions."""
  net, params = _wide_net()
  monkeypatch.setattr(model_lib, "WINOGRAD_MIN_SHARE", 16.0)
  spec = features_lib.feature_spec(net, params, (24, 24))
  x = jax.random.uniform(jax.random.key(7), (2, 24, 24, 3))
  target = features_lib.make_phi(net)(params, jax.random.uniform(jax.random.key(8), (2, 24, 24, 3)))
  out = {}
  for mode in ("off", "on"):
    config = reconstruct.ReverseMapConfig(winograd=mode, linesearch="none", chunk=5,
                                          tv_weight=1e-5)
    rmap = reconstruct.ReverseMap(net, spec, config)
    variables = rmap._start(params, target, x, None)[3]
    assert ("kernel_w" in variables["backward"]["conv4_2"]) == (mode == "on")
    assert "kernel_w" not in variables["backward"]["conv4_1"]
    out[mode] = np.asarray(rmap(params, target, x, 5).images)
  assert np.abs(out["on"] - out["off"]).max() < 1e-3
