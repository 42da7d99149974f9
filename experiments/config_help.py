"""`--help`'s list of config fields, read from the config file itself so it cannot go stale.

Convention (experiments/configs/*.py): a one-line `# comment` directly above a field's first
assignment `c.FIELD = …` says what it does; a trailing `# comment` on that line is the
fallback. A config built on another (`synthetic.get_config`, `synthetic.derived`) takes the
lines of the file it starts from for the fields it does not assign itself.
"""

from __future__ import annotations

import importlib.util
import io
import re
import tokenize
from pathlib import Path

import ml_collections

BASE = Path(__file__).resolve().parents[1] / "dfi_jax" / "configs" / "synthetic.py"
_ASSIGN = re.compile(r"^\s*c\.(\w+)\s*=")


def _comments(source: str) -> dict[int, str]:
  """Line number -> the comment on that line (tokenize: a '#' inside a string is not one)."""
  found = {}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      found[tok.start[0]] = tok.string.lstrip("#").strip()
  return found


def field_help(path: str | Path) -> dict[str, str]:
  """Field -> its one line of help from config file `path` (see the module docstring)."""
  source = Path(path).read_text()
  comments = _comments(source)
  lines = source.splitlines()
  found: dict[str, str] = {}
  for number, line in enumerate(lines, 1):
    match = _ASSIGN.match(line)
    if not match or match.group(1) in found:
      continue
    above = lines[number - 2].strip() if number > 1 else ""
    if above.startswith("#") and (number - 1) in comments:
      found[match.group(1)] = comments[number - 1]
    elif number in comments:
      found[match.group(1)] = comments[number]
  return found


def load(spec: str) -> ml_collections.ConfigDict:
  """`FILE[:variant]`'s `get_config(variant)`."""
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_config_for_help", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def _flat(config, prefix: str = "") -> dict:
  out = {}
  for name, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flat(value, f"{prefix}{name}."))
    else:
      out[f"{prefix}{name}"] = value
  return out


def _shown(value) -> str:
  if isinstance(value, (tuple, list)):
    return ",".join(str(v) for v in value) if value else "''"
  if isinstance(value, str):
    return value if value else "''"
  return repr(value)


def describe(spec: str, flag: str = "config") -> str:
  """The help block for the config `spec` (`FILE[:variant]`): every field with its default and
  one line from the file (or from synthetic.py for fields it inherits)."""
  path = spec.partition(":")[0]
  config = load(spec)
  notes = field_help(BASE)
  notes.update(field_help(path))
  fields = _flat(config)
  rows = [(f"--{flag}.{name}={_shown(value)}", notes.get(name.split(".")[-1], ""))
          for name, value in fields.items()]
  width = min(44, max(len(r[0]) for r in rows) + 2) if rows else 0
  out = [f"config fields of {spec} (change one with --{flag}.FIELD=VALUE; lists as a,b):"]
  for left, note in rows:
    out.append(f"  {left:<{width}}{note}" if len(left) < width else f"  {left}  {note}")
  return "\n".join(out)
