"""The paper's demo1 on LFW: six edits of LFW faces with Kumar et al.'s attributes.

  python -m experiments.prepare_data --dataset=lfw --manual_dir=DIR --data_dir=~/tensorflow_datasets
  python -m experiments.transform --config=experiments/configs/lfw_demo1.py \
      --config.weights=weights/vgg_normalised.npz --workdir=runs/demo1

DIR holds `lfw.tgz` and `lfw_attributes.txt`. The official settings: bank = the 13,143 LFW images
with attributes (binarised as in the release), centre 150² crop resized to 200² (the `lfw_aegan`
crop, without its landmark alignment); edits Youth→Senior, Mouth Closed→Mouth Slightly Open,
Narrow Eyes→Eyes Open, Frowning→Smiling, No Beard→Mustache, No Eyewear→Eyeglasses; source/target
neighbours among the images of the test image's gender group, ranked by Hamming distance over
the 74 binary attributes; K = 100; δ = 0.4 with mean-square scaling; 500 L-BFGS iterations,
λ = 0.001. Writes `grid.png` like the official `results/demo1.png`: one row per test image,
the original then the six edits. The official code used Caffe's `vgg_normalised.caffemodel`
(port it with `python -m experiments.port_weights`); expect minutes per edit on a CPU.

Variant `tiny` runs on the fakes of `python -m dfi_jax.data.datasets.fakes` in seconds (tests):

  python -m dfi_jax.data.datasets.fakes --out=/tmp/dfi_fakes
  python -m experiments.prepare_data --dataset=lfw --manual_dir=/tmp/dfi_fakes/lfw_manual \
      --data_dir=/tmp/dfi_fakes/tfds --checksums=/tmp/dfi_fakes/lfw_manual/checksums.tsv
  python -m experiments.transform --config=experiments/configs/lfw_demo1.py:tiny \
      --config.data_dir=/tmp/dfi_fakes/tfds --workdir=runs/demo1_tiny
"""

import ml_collections

from dfi_jax.configs import variants
from dfi_jax.data.datasets import fakes
from dfi_jax.data.datasets import lfw_attributes
from experiments.configs import synthetic

# Each variant's fields that differ from get_config's; the first is the default.
VARIANTS = {
    "demo1": dict(image_size=200, weights="weights/vgg_normalised.npz", k=100, deltas=(0.4,),
                  iterations=500, batch_size=6),
    # The fakes, at synthetic.py's tiny size, K, δ and random weights.
    "tiny": dict(data_dir="/tmp/dfi_fakes/tfds", test_names=fakes.LFW_TEST_NAMES, batch_size=12),
}


def get_config(arg: str = "demo1") -> ml_collections.ConfigDict:
  c = synthetic.derived(arg, "lfw_demo1.py", VARIANTS)
  c.data = "lfw"
  c.data_dir = "~/tensorflow_datasets"  # where prepare_data wrote tfds's lfw and the index
  c.crop = ()  # (top, left, height, width) in the 250² image; () = centre 150² (official)
  c.attributes = lfw_attributes.DEMO1_EDITS
  c.neighbours = "attributes"
  c.scaling = "mean_square"
  c.tv_weight = 0.001
  c.next_iterations = 250
  # Test images: LFW image names ("Person_Name_0001"), excluded from their own neighbours.
  c.test_names = ("Aaron_Eckhart_0001", "Al_Gore_0001", "Alan_Greenspan_0001")
  c = variants.apply(c, arg, "lfw_demo1.py", VARIANTS)
  c.num_test = len(c.test_names)
  return c
