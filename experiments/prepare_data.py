"""Prepare a real dataset from files you downloaded yourself; nothing is downloaded.

  python -m experiments.prepare_data --dataset=lfw --manual_dir=~/lfw_manual \
      --data_dir=~/tensorflow_datasets
  python -m experiments.prepare_data --dataset=celeb_a --manual_dir=~/celeba_manual

LFW needs `lfw.tgz` (180,566,744 bytes) and Kumar et al.'s `lfw_attributes.txt` in
--manual_dir; CelebA its five files (`img_align_celeba.zip`, `list_eval_partition.txt`,
`list_attr_celeba.txt`, `list_landmarks_align_celeba.txt`, `identity_CelebA.txt`). Preparing
needs TensorFlow (`pip install -e '.[prepare]'`); runs read the result without it. LFW takes a
few minutes on 2 cores, CelebA (1.4 GB of JPEGs) longer.
"""

from absl import flags

from experiments import cli

_DATASET = flags.DEFINE_enum("dataset", None, ["lfw", "celeb_a"], "Which dataset.",
                             required=True)
_MANUAL_DIR = flags.DEFINE_string("manual_dir", "~/tensorflow_datasets/downloads/manual",
                                  "Directory holding the dataset's original files.")
_DATA_DIR = flags.DEFINE_string("data_dir", "~/tensorflow_datasets",
                                "tfds data directory to write (the runs' --config.data_dir).")
_CHECKSUMS = flags.DEFINE_string(
    "checksums", None, "A tfds checksums.tsv (url, size, sha256, filename) replacing the "
    "registered sizes and sha256 of the manual files; for tests' fake archives.")


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  from dfi_jax.data.datasets import celeb_a  # pylint: disable=g-import-not-at-top
  from dfi_jax.data.datasets import common  # pylint: disable=g-import-not-at-top
  from dfi_jax.data.datasets import lfw  # pylint: disable=g-import-not-at-top
  expected = common.read_checksums_tsv(_CHECKSUMS.value) if _CHECKSUMS.value else None
  if _DATASET.value == "lfw":
    report = lfw.prepare(_MANUAL_DIR.value, _DATA_DIR.value, expected)
    print(f"lfw: {report.num_images} images prepared in {_DATA_DIR.value}; "
          f"{report.join.summary()}; index {report.index}")
  else:
    counts = celeb_a.prepare(_MANUAL_DIR.value, _DATA_DIR.value, expected)
    print(f"celeb_a: prepared in {_DATA_DIR.value}: "
          + ", ".join(f"{split} {n} images" for split, n in counts.items()))


if __name__ == "__main__":
  cli.run_main(main)
