"""What every experiments/ entry point shares: one clear line on stderr and exit 1 for bad input.

Also Ctrl-C and SIGTERM: one line saying what was kept (exit 130), never a traceback; the temp
file of a write in progress is removed on the way out (files_lib.atomic_write_bytes).
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Callable, NamedTuple, NoReturn

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from dfi_jax.base import files as files_lib
from dfi_jax.base import run_state
from experiments import config_help

# Errors a user can cause: RunError, WeightsError and ImageError are ValueErrors; OSError covers
# unreadable files and a full disk; AttributeError is ml_collections' unknown config field.
USER_ERRORS = (ValueError, OSError, KeyError, TypeError, AttributeError)
INTERRUPTED = 130  # the shell's status for a run stopped by SIGINT
HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--help=true")
_CONFIG_DEFAULTS: dict[str, str] = {}  # config flag name -> its default file


def fail(message: str, status: int = 1, prefix: str = "error: ") -> NoReturn:
  print(f"{prefix}{' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(status)


def _config_files(argv) -> list[str]:
  """The files named by `--config=FILE[:variant]` (or `--config FILE`) in `argv`."""
  found = []
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      found.append(arg[len("--config="):])
    elif arg == "--config" and i + 1 < len(argv):
      found.append(argv[i + 1])
  return [f.split(":")[0] for f in found]


def _config_name(argv) -> str:
  files = _config_files(argv)
  return files[-1] if files else "(the default)"


def _bad_override(e: Exception, argv=()) -> NoReturn:
  """One clean line: ml_collections' KeyError/AttributeError text is a repr with a newline."""
  text = str(e.args[0] if e.args else e).replace("\\n", " ").replace("\\'", "'")
  text = " ".join(text.split())
  field = re.search(r"'(\w+)'", text)
  guess = re.search(r'Did you mean "([\w.]+)"', text)
  if isinstance(e, (KeyError, AttributeError)) and field:
    given = next((a.split("=")[0] for a in argv if a.startswith("--config.")
                  and a.split("=")[0].endswith("." + field.group(1))),
                 f"--config.{field.group(1)}")
    hint = f"; did you mean {given.rsplit('.', 1)[0]}.{guess.group(1)}?" if guess else ""
    fail(f"{given}: no such config field{hint} (--help lists the fields)")
  fail(f"bad flag or config override: {type(e).__name__}: {text}; see --help for the config's "
       "fields")


def help_requested(argv) -> bool:
  return any(a in HELP_FLAGS for a in argv[1:])


def print_help(argv) -> None:
  """The command's docstring, its flags and (with a config flag) every config field with its
  default and one line of help (`config_help`), on stdout."""
  main = sys.modules.get("__main__")
  print((main.__doc__ or "").strip() if main else "")
  print("\nflags:\n" + flags.FLAGS.main_module_help())
  for name, default in _CONFIG_DEFAULTS.items():
    given = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    spec = given[-1] if given else default
    try:
      print("\n" + config_help.describe(spec, name))
    except Exception as e:  # pylint: disable=broad-except  # the config file is the user's code
      print(f"\n(--{name}={spec}: cannot list its fields: {type(e).__name__}: {e})")


def define_config_file(default: str, help_text: str = "Config file (FILE or FILE:variant).",
                       name: str = "config"):
  """`config_flags.DEFINE_config_file`, with a bad override of the *default* file on one line.

  Without `--config=` on the command line, ml_collections applies `--config.X=…` overrides
  while the flag is defined (at import, before `parse_flags` runs), so an unknown field or a
  badly typed value would otherwise end in a traceback.
  """
  _CONFIG_DEFAULTS[name] = default
  if help_requested(sys.argv):  # --config.X overrides are ignored for --help
    return config_flags.DEFINE_config_file(name, None, help_text)
  try:
    return config_flags.DEFINE_config_file(name, default, help_text)
  except USER_ERRORS as e:
    _bad_override(e, sys.argv)
  except Exception as e:  # pylint: disable=broad-except  # the config file is the user's code
    fail(f"--{name}={default}: the config file raised {type(e).__name__}: {e}")


def parse_flags(argv):
  """absl's parser, with bad flags, config overrides and config files reported on one line;
  `--help` (or -h, --helpfull) prints `print_help` and exits 0."""
  if help_requested(argv):
    print_help(argv)
    sys.exit(0)
  for path in _config_files(argv):
    if Path(path).exists():  # a named pipe would block the config loader forever
      try:
        files_lib.check_input_file(path, f"--config={path}")
      except files_lib.InputError as e:
        fail(e)
  absl_logger = logging.get_absl_logger()
  absl_logger.disabled = True  # config_flags' own warnings would add lines to the one we print
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    if any(l.startswith("Traceback") for l in lines):  # a config file raised: keep its message
      lines = [lines[0].split("Traceback")[0].rstrip(" :"), lines[-1]]
    fail(": ".join(lines) if len(lines) > 1 else str(e))
  except USER_ERRORS as e:  # e.g. --config.nosuchfield=1
    _bad_override(e, argv)
  except Exception as e:  # pylint: disable=broad-except  # the config file is the user's code
    fail(f"--config={_config_name(argv)}: the config file raised {type(e).__name__}: {e}")
  finally:
    absl_logger.disabled = False
  if "config" in flags.FLAGS:
    config = flags.FLAGS["config"].value
    if not isinstance(config, ml_collections.ConfigDict):
      fail(f"--config={_config_name(argv)}: get_config() returned {type(config).__name__}; "
           "expected an ml_collections.ConfigDict")
  return rest


def _terminated(signum, frame):  # pylint: disable=unused-argument
  raise KeyboardInterrupt(signal.Signals(signum).name)


def catch_termination() -> None:
  """SIGTERM ends the run like Ctrl-C: a KeyboardInterrupt, so writes in progress clean up."""
  signal.signal(signal.SIGTERM, _terminated)


def interrupted(e: KeyboardInterrupt, kept: str, prefix: str = "") -> NoReturn:
  """The one line for Ctrl-C or SIGTERM, saying what was kept; exit 130."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the line
  fail(f"({e.args[0] if e.args else 'Ctrl-C'}): {kept}", INTERRUPTED, f"{prefix}interrupted ")


def call_main(main: Callable, argv: list[str], kept: Callable[[], str] | None = None):
  """`main(argv)` after the flags are parsed: positional arguments refused (every command takes
  flags only), user errors as one stderr line and exit 1, Ctrl-C and SIGTERM as one line,
  `interrupted (…): <kept()>`, and exit 130."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # JAX's INFO lines (e.g. "no TPU") are noise here
  catch_termination()
  try:
    if len(argv) > 1:
      raise ValueError(f"unexpected arguments {argv[1:]}")
    return main(argv)
  except USER_ERRORS as e:
    fail(f"{type(e).__name__}: {e}")
  except KeyboardInterrupt as e:
    interrupted(e, kept() if kept is not None else "files already written are complete")


def run_main(main: Callable, kept: Callable[[], str] | None = None) -> None:
  """`app.run(main)` with `parse_flags` and `call_main`'s handling of arguments and errors."""
  app.run(lambda argv: call_main(main, argv, kept), flags_parser=parse_flags)


class RunFlags(NamedTuple):
  """A run command's `--config` (a ConfigDict once parsed) and `--workdir` (required)."""
  config: flags.FlagHolder
  workdir: flags.FlagHolder


def define_run_flags(default_config: str) -> RunFlags:
  """`--config` (default `default_config`, FILE or FILE:variant) and `--workdir`, the flags
  every run command (transform, evaluate, sweep, inpaint, highres) takes; run it with
  `run_in_workdir`."""
  config = define_config_file(default_config, "Config file (FILE or FILE:variant).")
  workdir = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
  # --help lists the main module's key flags (absl names it by sys.argv[0]): --workdir is one.
  flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS["workdir"])
  return RunFlags(config, workdir)


def run_in_workdir(main: Callable, run: RunFlags) -> None:
  """`run_main` for a run command: an interrupted or failed run says what it kept in
  `--workdir` (and that the same command resumes)."""
  run_main(main, kept=lambda: run_state.kept_message(run.workdir.value))


def define_output_file(what: str) -> tuple[flags.FlagHolder, flags.FlagHolder]:
  """`--out` (required: the `what` file to write, .npz) and `--overwrite` (replace it), for the
  training commands; check them with `check_new_output`."""
  return (flags.DEFINE_string("out", None, f"{what} file to write (.npz).", required=True),
          flags.DEFINE_bool("overwrite", False, "Replace an existing --out file."))


def check_new_output(out, overwrite: bool, flag: str = "out") -> Path:
  """`--flag`'s file path; refuses an empty one, a directory, and an existing file unless
  `--overwrite` was given."""
  out = run_state.check_output_path(out, flag)
  if out.is_dir():
    raise ValueError(f"--{flag}={out} is a directory; expected a file path")
  if out.exists() and not overwrite:
    raise ValueError(f"--{flag}={out} exists; pass --overwrite to replace it")
  return out


def check_new_folder(out, overwrite: bool, flag: str = "out_dir") -> Path:
  """`--flag`'s folder; refuses an empty path, a file, and a non-empty folder unless
  `--overwrite` was given (its files of the same names are then replaced)."""
  out = run_state.check_output_path(out, flag)
  if out.exists() and not out.is_dir():
    raise ValueError(f"--{flag}={out} is a file; expected a folder")
  if out.is_dir() and any(out.iterdir()) and not overwrite:
    raise ValueError(f"--{flag}={out} exists and is not empty; pass --overwrite to replace "
                     "what it holds, or choose a new folder")
  return out


class DistributedFlags(NamedTuple):
  distributed: flags.FlagHolder
  coordinator_address: flags.FlagHolder
  num_processes: flags.FlagHolder
  process_id: flags.FlagHolder
  timeout: flags.FlagHolder


def define_distributed_flags() -> DistributedFlags:
  """`--distributed` and its settings, for entry points that every host runs at once."""
  return DistributedFlags(
      flags.DEFINE_bool("distributed", False, "Every host runs this same command: call "
                        "jax.distributed.initialize (TPU pods, SLURM, Open MPI are detected)."),
      flags.DEFINE_string("coordinator_address", None, "host:port of process 0 "
                          "(auto-detected on TPU pods and SLURM)."),
      flags.DEFINE_integer("num_processes", None, "Hosts (auto-detected)."),
      flags.DEFINE_integer("process_id", None, "This host's index (auto-detected)."),
      flags.DEFINE_integer("distributed_timeout", 300, "Seconds to wait for every host to "
                           "join before giving up with one line."))


def initialize_distributed(given: DistributedFlags) -> None:
  """`jax.distributed.initialize` with the flags' settings when `--distributed` is given."""
  settings = (given.coordinator_address.value, given.num_processes.value,
              given.process_id.value)
  if not given.distributed.value:
    if any(v is not None for v in settings):
      raise ValueError("--coordinator_address, --num_processes and --process_id need "
                       "--distributed")
    return
  from dfi_jax.runs import hosts  # imports JAX: only when it is needed
  if given.timeout.value <= 0:
    raise ValueError(f"--distributed_timeout={given.timeout.value}: expected seconds > 0")
  hosts.initialize(True, hosts.DistributedSettings(*settings, timeout_s=given.timeout.value))
