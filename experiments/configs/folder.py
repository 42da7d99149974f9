"""DFI on your own folder of images with a CSV of attributes (or UT-Zappos50K shoes, …).

  python -m experiments.transform --config=experiments/configs/folder.py \
      --config.folder=~/my_photos --config.csv=~/my_photos/attributes.csv \
      --config.test_names=a.jpg,b.jpg --config.edits=smiling,no_beard->mustache --workdir=runs/mine

The CSV: a header, a `name` column with each image's path relative to the folder, and attribute
columns, each binary (0/1, -1/1, true/false, yes/no) or real-valued (binarised: `binarise` =
"official", the top two thirds of the positive values, or "positive", > 0). `edits`: "b" adds
column b (source: images without b), "a->b" is the official pair rule; () = add every column.
Images are fitted into an `image_size` square (`fit` = "pad" keeps the aspect ratio, "stretch"
does not), after an optional `crop` (top, left, height, width). The folder is read lazily.

Variant `tiny` runs on `python -m dfi_jax.data.datasets.fakes --out=/tmp/dfi_fakes` (tests).
"""

import ml_collections

from dfi_jax.configs import variants
from dfi_jax.data.datasets import fakes
from experiments.configs import synthetic

# Each variant's fields that differ from get_config's; the first is the default.
VARIANTS = {
    "demo": {},
    # The fakes (see synthetic.on_real_images).
    "tiny": dict(folder="/tmp/dfi_fakes/folder", csv="/tmp/dfi_fakes/folder/attributes.csv",
                 edits=("smiling", "eyeglasses", "age_score")),
}


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
  c = synthetic.derived(arg, "folder.py", VARIANTS)
  c.data = "folder"
  c.folder = "~/dfi_folder"
  c.csv = "~/dfi_folder/attributes.csv"
  c.name_column = "name"
  c.columns = ()  # () = every column but the name
  c.binarise = "official"
  c.group_column = ""  # optional binary column: neighbours only within the same value
  c.edits = ()
  c.attributes = ()  # which edits to run; () = all of `edits`
  c.crop = ()
  c.fit = "pad"
  c = variants.apply(c, arg, "folder.py", VARIANTS)
  return synthetic.on_real_images(c, ("image1.jpg",), fakes.FOLDER_TEST_NAMES, tiny_k=4)
