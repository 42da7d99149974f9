"""VGG16/VGG19 forward against an independent NumPy float64 reference."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from dfi_jax.nets import model as model_lib
from dfi_jax.nets import weights as weights_lib
from vgg_reference import numpy_vgg

@pytest.mark.parametrize("architecture", ["vgg16", "vgg19"])
@pytest.mark.parametrize("pooling", ["floor", "ceil"])
@pytest.mark.parametrize("convention", ["torchvision", "caffe"])
def test_forward_matches_numpy_reference(pooling, convention, architecture):
  params = weights_lib.init_random(jax.random.key(1), width=1 / 16, architecture=architecture)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda v: v + 0.01 * rng.standard_normal(v.shape).astype(np.float32),
                        params)  # non-zero biases
  image = rng.uniform(size=(37, 45, 3))
  net = model_lib.VGG(width=1 / 16, pooling=pooling, preprocessing=convention,
                      architecture=architecture)
  got = net.apply({"params": params}, jnp.asarray(image[None], jnp.float32))
  want = numpy_vgg(image[None], {n: (p["kernel"], p["bias"]) for n, p in params.items()},
                   convention, pooling, architecture)
  for tap in model_lib.DEFAULT_TAPS:
    assert got[tap].shape == want[tap].shape
    rel = np.linalg.norm(np.asarray(got[tap], np.float64) - want[tap]) / np.linalg.norm(want[tap])
    assert rel <= 1e-5, (tap, rel)


def test_the_two_layouts():
  assert model_lib.conv_names("vgg16")[6:9] == ("conv3_3", "conv4_1", "conv4_2")
  assert len(model_lib.conv_names("vgg16")) == 13 and len(model_lib.conv_names("vgg19")) == 16
  p16 = weights_lib.init_random(0, width=1 / 16, architecture="vgg16")
  assert "conv3_4" not in p16 and p16["conv4_1"]["kernel"].shape == (3, 3, 16, 32)
  with pytest.raises(ValueError, match="conv4_4"):
    weights_lib.init_random(0, width=1 / 16, last_layer="conv4_4", architecture="vgg16")
  with pytest.raises(ValueError, match="vgg16"):
    model_lib.VGG(taps=("conv3_4",), architecture="vgg16").apply(
        {"params": p16}, jnp.zeros((1, 32, 32, 3)))
  # The two layouts cost the same up to conv3_3; VGG19's conv3_4 is the difference at conv4_1.
  assert model_lib.conv_gflop(224, ("conv3_3",), architecture="vgg16") == pytest.approx(
      model_lib.conv_gflop(224, ("conv3_3",), architecture="vgg19"))
  extra = 2 * 56 * 56 * 9 * 256 * 256 / 1e9  # conv3_4, only in VGG19
  assert model_lib.conv_gflop(224, ("conv4_1",), architecture="vgg19") - model_lib.conv_gflop(
      224, ("conv4_1",), architecture="vgg16") == pytest.approx(extra)


def test_ceil_and_floor_pooling_shapes_differ_on_odd_sizes():
  params = weights_lib.init_random(jax.random.key(0), width=1 / 16)
  x = jnp.zeros((1, 37, 45, 3))
  floor = model_lib.VGG19(width=1 / 16, pooling="floor").apply({"params": params}, x)
  ceil = model_lib.VGG19(width=1 / 16, pooling="ceil").apply({"params": params}, x)
  assert floor["conv5_1"].shape[1:3] == (2, 2)  # 37->18->9->4->2, 45->22->11->5->2
  assert ceil["conv5_1"].shape[1:3] == (3, 3)  # 37->19->10->5->3, 45->23->12->6->3


def test_fast_backward_kernels_give_identical_gradients():
  params = weights_lib.init_random(jax.random.key(2), width=1 / 16)
  net = model_lib.VGG19(width=1 / 16)
  x = jax.random.uniform(jax.random.key(3), (2, 32, 32, 3))

  def f(z, extra):
    return sum(jnp.sum(v ** 2) for v in net.apply({"params": params, **extra}, z).values())

  plain = jax.grad(f)(x, {})
  fast = jax.grad(f)(x, {"backward": model_lib.backward_kernels(params)})
  np.testing.assert_allclose(np.asarray(fast), np.asarray(plain), rtol=1e-5, atol=1e-6)


def test_backward_kernels_are_one_compiled_program_of_exact_flips():
  """`backward_kernels` runs compiled (one program, not a compilation per op and shape on the
  first call of a process) and is exactly the spatial flip with in/out swapped."""
  params = weights_lib.init_random(jax.random.key(4), width=1 / 16, last_layer="conv2_1")
  before = model_lib._backward_kernels._cache_size()
  out = model_lib.backward_kernels(params)
  assert model_lib._backward_kernels._cache_size() == before + 1
  k = np.asarray(params["conv1_2"]["kernel"])
  np.testing.assert_array_equal(np.asarray(out["conv1_2"]["kernel_t"]),
                                k[::-1, ::-1].transpose(0, 1, 3, 2))


def test_width_and_taps():
  params = weights_lib.init_random(jax.random.key(0), width=0.25, last_layer="conv4_1")
  assert params["conv4_1"]["kernel"].shape == (3, 3, 64, 128)
  assert "conv5_1" not in params
  out = model_lib.VGG19(taps=("conv2_1", "conv4_1"), width=0.25).apply(
      {"params": params}, jnp.zeros((1, 32, 32, 3)))
  assert list(out) == ["conv2_1", "conv4_1"]
  assert out["conv2_1"].shape == (1, 16, 16, 32)


def test_bad_taps_and_conventions_are_rejected():
  params = weights_lib.init_random(jax.random.key(0), width=1 / 16)
  with pytest.raises(ValueError, match="taps"):
    model_lib.VGG19(taps=("relu9",), width=1 / 16).apply({"params": params}, jnp.zeros((1, 32, 32, 3)))
  with pytest.raises(ValueError, match="preprocessing"):
    model_lib.preprocess(jnp.zeros((1, 2, 2, 3)), "imagenet")
  with pytest.raises(ValueError, match="pooling"):
    model_lib.max_pool(jnp.zeros((1, 2, 2, 3)), "round")
  assert model_lib.min_image_size(("conv3_1", "conv4_1", "conv5_1")) == 16


@pytest.mark.parametrize("mode", ["floor", "ceil"])
@pytest.mark.parametrize("shape", [(2, 8, 6, 5), (1, 9, 7, 3)])
def test_max_pool_values_and_gradients_equal_the_reduce_window_reference(mode, shape):
  """The elementwise pool and its gradient equal flax's reduce-window pool and XLA's
  select-and-scatter gradient exactly, ties included (the gradient goes to the window's first
  maximum): a flat image makes equal activations."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(np.maximum(np.round(rng.standard_normal(shape) * 2) / 2, 0), jnp.float32)
  g = jnp.asarray(rng.standard_normal(model_lib.max_pool(x, mode).shape), jnp.float32)
  got, got_vjp = jax.vjp(lambda a: model_lib.max_pool(a, mode), x)
  want, want_vjp = jax.vjp(lambda a: model_lib.reference_max_pool(a, mode), x)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  np.testing.assert_array_equal(np.asarray(got_vjp(g)[0]), np.asarray(want_vjp(g)[0]))
  assert int(jnp.sum(got_vjp(g)[0] != 0)) == got.size  # one entry per window, ties included


def test_network_gradient_equals_the_reference_pooling(monkeypatch):
  """φ's input gradient through the whole network (flipped kernels, ReLU, pools) is the one of
  the reduce-window pooling; the second image is flat, so many windows hold equal maxima."""
  params = weights_lib.init_random(jax.random.key(5), width=1 / 16)
  net = model_lib.VGG19(width=1 / 16)
  x = jax.random.uniform(jax.random.key(6), (2, 34, 32, 3)).at[1].set(0.5)
  extra = {"backward": model_lib.backward_kernels(params)}

  def f(z):
    return sum(jnp.sum(v ** 2) for v in net.apply({"params": params, **extra}, z).values())

  got = jax.grad(f)(x)
  monkeypatch.setattr(model_lib, "max_pool", model_lib.reference_max_pool)
  want = jax.grad(f)(x)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-7)
