"""The paper's six face edits on CelebA (through tfds's `celeb_a`), attribute neighbours.

  python -m experiments.prepare_data --dataset=celeb_a --manual_dir=DIR
  python -m experiments.transform --config=experiments/configs/celeb_a.py \
      --config.weights=weights/vgg_normalised.npz --workdir=runs/celeb_a

DIR holds CelebA's five files. The bank is split `split` (default train, 162,770 images), each
aligned 218×178 image cropped to rows 40:188, columns 15:163 and resized to `image_size`. CelebA
has no "old" or "eyes open": they are derived as not Young and not Narrow_Eyes, so the six
edits are Young→Old, add Mouth_Slightly_Open, Narrow_Eyes→Eyes_Open, add Smiling,
No_Beard→Mustache and add Eyeglasses; neighbours within the test image's gender (Male).

Variant `tiny` runs on `python -m dfi_jax.data.datasets.fakes --out=/tmp/dfi_fakes` (tests).
"""

import ml_collections

from dfi_jax.configs import variants
from dfi_jax.data.datasets import celeb_a
from dfi_jax.data.datasets import fakes
from experiments.configs import synthetic

# Each variant's fields that differ from get_config's; the first is the default. `tiny`: the
# fakes (see synthetic.on_real_images).
VARIANTS = {"demo": {}, "tiny": dict(data_dir="/tmp/dfi_fakes/tfds")}


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
  c = synthetic.derived(arg, "celeb_a.py", VARIANTS)
  c.data = "celeb_a"
  c.data_dir = "~/tensorflow_datasets"
  c.split = "train"
  c.crop = ()  # () = rows 40:188, columns 15:163 of the 218×178 image
  c.attributes = tuple(e.name for e in celeb_a.SIX_EDITS)
  c = variants.apply(c, arg, "celeb_a.py", VARIANTS)
  return synthetic.on_real_images(c, ("000001.jpg", "000002.jpg", "000003.jpg"),
                                  fakes.CELEB_A_TEST_NAMES, tiny_k=3)
