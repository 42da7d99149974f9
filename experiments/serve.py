"""The DFI editor in the browser: `python -m experiments.serve [--port=8027] [--host=127.0.0.1]`.

  --config=FILE[:variant]   the editor's settings (default: experiments/configs/synthetic.py,
                            the ImageNet VGG16 default; `:tiny` = random weights, seconds)
  --max_upload_mb=20        the largest photo file accepted
  --nosweep                 no δ-sweep animation after each result (one solve per click)

Open the printed address. Everything stays on this computer: the page loads nothing from
elsewhere; photos and results live in a temporary folder removed when the server stops (Ctrl-C
or SIGTERM). Needs the photos' face detector: `pip install -e '.[serve]'` (`make serve` does).
"""

import os
import sys

from absl import flags

from dfi_jax.serve import server as server_lib
from dfi_jax.serve import service as service_lib
from experiments import cli

_CONFIG = cli.define_config_file("experiments/configs/synthetic.py",
                                 "Config file (FILE or FILE:variant).")
_PORT = flags.DEFINE_integer("port", 8027, "Port to listen on (0 = any free port).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on; anything but "
                            "127.0.0.1/localhost lets other computers use the page.")
_MAX_UPLOAD_MB = flags.DEFINE_float("max_upload_mb", 20.0, "Largest photo file accepted (MB).")
_SWEEP = flags.DEFINE_bool("sweep", True, "After each result, solve two more δs and play the "
                           "δ sweep as an animation.")
LOCAL = ("127.0.0.1", "localhost", "::1")
KEPT = "the server stopped; its temporary folder was removed"


def main(argv):
  del argv  # cli.run_main refuses positional arguments
  if not 0 <= _PORT.value <= 65535:
    raise ValueError(f"--port={_PORT.value}; expected 0 to 65535")
  if not _MAX_UPLOAD_MB.value > 0:
    raise ValueError(f"--max_upload_mb={_MAX_UPLOAD_MB.value:g}; expected a positive size")
  if _HOST.value not in LOCAL:
    print(f"warning: --host={_HOST.value}: anyone who can reach this computer on port "
          f"{_PORT.value} can use the page and upload photos", flush=True)
  try:
    server = server_lib.Server((_HOST.value, _PORT.value), None)
  except OSError as e:
    raise ValueError(f"--host={_HOST.value} --port={_PORT.value}: cannot listen there "
                     f"({e.strerror or e}); pick another --port") from None
  service = server.service = service_lib.Service(_CONFIG.value, int(_MAX_UPLOAD_MB.value * 1e6),
                                                 _SWEEP.value)
  print(f"DFI editor: open {server.url} (the editor loads in the background; Ctrl-C stops)",
        flush=True)
  print(f"temporary folder: {service.folder} (removed when the server stops)", flush=True)
  try:
    with server:
      server.serve_forever()
  except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (cli.call_main)
    service.close()
    print(f"interrupted ({e.args[0] if e.args else 'Ctrl-C'}): {KEPT}", file=sys.stderr,
          flush=True)
    # The solver or loader thread may be inside XLA, which aborts when the interpreter is
    # torn down around it; everything worth keeping is already gone with the folder.
    os._exit(cli.INTERRUPTED)  # pylint: disable=protected-access
  finally:
    service.close()


if __name__ == "__main__":
  cli.run_main(main, kept=lambda: KEPT)
