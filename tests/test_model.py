"""VGG19 forward against an independent NumPy float64 reference."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from dfi_jax import model as model_lib
from dfi_jax import weights as weights_lib

LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]


def np_conv3x3(x, kernel, bias):
  """SAME 3x3 convolution of [H, W, I] with [3, 3, I, O], float64, by shifted sums."""
  h, w, _ = x.shape
  padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  out = np.zeros((h, w, kernel.shape[-1]))
  for dy in range(3):
    for dx in range(3):
      out += padded[dy:dy + h, dx:dx + w] @ kernel[dy, dx]
  return out + bias


def np_pool(x, ceil):
  h, w, c = x.shape
  if ceil:
    x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
  else:
    x = x[:h - h % 2, :w - w % 2]
  h2, w2 = x.shape[0] // 2, x.shape[1] // 2
  return x.reshape(h2, 2, w2, 2, c).max(axis=(1, 3))


def np_vgg(image, params, convention, ceil):
  if convention == "torchvision":
    x = (image - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  else:
    x = image[..., [2, 1, 0]] * 255.0 - np.array([103.939, 116.779, 123.68])
  names = iter(["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                "conv3_4", "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1"])
  taps = {}
  for item in LAYOUT:
    if item == "M":
      x = np_pool(x, ceil)
      continue
    name = next(names)
    p = params[name]
    x = np.maximum(np_conv3x3(x, p["kernel"].astype(np.float64), p["bias"]), 0.0)
    taps[name] = x
  return taps


@pytest.mark.parametrize("pooling", ["floor", "ceil"])
@pytest.mark.parametrize("convention", ["torchvision", "caffe"])
def test_forward_matches_numpy_reference(pooling, convention):
  params = weights_lib.init_random(jax.random.key(1), width=1 / 16)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda v: v + 0.01 * rng.standard_normal(v.shape).astype(np.float32),
                        params)  # non-zero biases
  image = rng.uniform(size=(37, 45, 3))
  net = model_lib.VGG19(width=1 / 16, pooling=pooling, preprocessing=convention)
  got = net.apply({"params": params}, jnp.asarray(image[None], jnp.float32))
  want = np_vgg(image, params, convention, pooling == "ceil")
  for tap in model_lib.DEFAULT_TAPS:
    assert got[tap].shape[1:] == want[tap].shape
    rel = np.linalg.norm(np.asarray(got[tap][0], np.float64) - want[tap]) / np.linalg.norm(want[tap])
    assert rel <= 1e-5, (tap, rel)


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
