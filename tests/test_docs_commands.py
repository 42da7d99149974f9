"""Every command README.md, docs/*.md and WORKSPACE.md show runs as written, as far as names go.

Each `python -m experiments.X …`, `python -m research.X …`, `python -m dfi_jax.X …` (also with
a path to the interpreter) and `make …` command, in code blocks and in inline code, is checked
without running it: the module exists; each `--flag` is one that command defines;
`--config=FILE[:variant]` loads (the variant is one the file accepts); each `--config.FIELD` is
a field of that config (or of the command's default config); each make target and `VAR=` is in
the Makefile. The commands' absl flags are
read in one child process that imports each command module in turn (nothing runs its `main`).
Upper-case names (`--config.FIELD`, `--config=FILE`) are placeholders and are not checked.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_DOCS = [*DOCS, ROOT / "WORKSPACE.md"]  # its commands are checked, not its wording
MODULE = re.compile(  # also `.venv/bin/python -m …`, which the one-way test then refuses
    r"(?:^|[\s;&|(])(?:\S*/)?python3?\s+-m\s+((?:experiments|research|dfi_jax)(?:\.\w+)+)")
MAKE = re.compile(r"(?:^|&&|;|\|\||\()\s*(make)\s")
SCRIPT = re.compile(r"(?:^|[\s;&|(])python3?\s+((?:tools|research|experiments)/[\w/]+\.py)")


class Command(NamedTuple):
  """One documented command: the file, the code it was found in, the module (or `make`) and
  its words after it."""
  doc: str
  text: str
  program: str
  args: list[str]

  def __str__(self):
    return f"{self.doc}: {self.text}"


# absl's help flags, which every command answers (experiments/cli.py lists the config's fields).
HELP_FLAGS = ("help", "helpshort", "helpfull")

def code_texts(text: str) -> list[str]:
  """The lines of fenced code blocks (backslash continuations joined) and the inline code
  spans (line breaks inside a span read as spaces)."""
  fence = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
  texts = []
  for block in fence.findall(text):
    texts += block.replace("\\\n", " ").splitlines()
  texts += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", fence.sub("", text))]
  return texts


def shell_words(rest: str) -> list[str]:
  """`rest`'s words up to the end of the shell command (`;`, `&`, `|`, `)`, a comment);
  optional parts' brackets (`[--k=1]`) are dropped."""
  lexer = shlex.shlex(rest, posix=True, punctuation_chars=";&|()")
  lexer.whitespace_split = True
  words = []
  try:
    for word in lexer:
      if word and set(word) <= set(";&|()"):
        break
      words.append(word)
  except ValueError:  # an unbalanced quote in prose: read up to it
    pass
  return [w.strip("[]") for w in words if w.strip("[]")]


def doc_commands() -> list[Command]:
  commands = []
  for path in COMMAND_DOCS:
    for text in code_texts(path.read_text()):
      for pattern in (MODULE, MAKE):  # each command runs to the next `;`, `&`, `|` or comment
        for m in pattern.finditer(text):
          commands.append(Command(path.name, text, m.group(1), shell_words(text[m.end():])))
  return commands


def placeholder(name: str) -> bool:
  return name.upper() == name and any(c.isalpha() for c in name)


INSPECT = r"""
import importlib, importlib.util, json, re, sys
from absl import app, flags, logging  # their own flags are every command's
from ml_collections import ConfigDict
FLAGS = flags.FLAGS
BASE = set(FLAGS)

def fields(config, prefix=""):
  out = []
  for key, value in config.items():
    out.append(prefix + key)
    if isinstance(value, ConfigDict):
      out += fields(value, prefix + key + ".")
  return out

request = json.loads(sys.stdin.read())
modules, configs = {}, {}
for name in request["modules"]:
  if importlib.util.find_spec(name) is None:
    modules[name] = None
    continue
  source = open(importlib.util.find_spec(name).origin).read()
  if not re.search(r"^from (absl|experiments) import", source, re.M):  # reads its own argv
    usage = re.findall(r"usage: python -m [\w.]+ ([^\"]*)", source)
    modules[name] = dict(flags=sorted(set(re.findall(r"--(\w+)", " ".join(usage)))),
                         bools=[], config=None)
    continue
  for flag in set(FLAGS) - BASE:
    delattr(FLAGS, flag)
  sys.modules.pop(name, None)
  importlib.import_module(name)
  config = FLAGS["config"].value if "config" in FLAGS else None
  modules[name] = dict(
      flags=sorted(FLAGS), config=fields(config) if isinstance(config, ConfigDict) else None,
      bools=sorted(f for f in FLAGS if isinstance(FLAGS[f], flags.BooleanFlag)))
for i, (file, variant) in enumerate(request["configs"]):
  try:
    spec = importlib.util.spec_from_file_location(f"doc_config_{i}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant) if variant else module.get_config()
    configs[f"{file}:{variant}"] = dict(fields=fields(config))
  except Exception as e:  # a bad variant or file: the test names it
    configs[f"{file}:{variant}"] = dict(error=f"{type(e).__name__}: {e}")
print(json.dumps(dict(modules=modules, configs=configs)))
"""


def config_value(command: Command) -> str | None:
  values = [a.split("=", 1)[1] for a in command.args if a.startswith("--config=")]
  return values[-1] if values else None


def config_key(value: str) -> str | None:
  """`FILE:variant` as the inspector's key, or None for a placeholder file."""
  file, _, variant = value.partition(":")
  if placeholder(Path(file).stem):
    return None
  return f"{file}:{variant}"


def named_configs() -> list[str]:
  """Every `--config=FILE[:variant]` the docs name, in commands or not, as `FILE:variant`."""
  return sorted({f"{m.group(1)}:{m.group(2) or ''}" for path in COMMAND_DOCS
                 for text in code_texts(path.read_text())
                 for m in re.finditer(r"--config=(experiments/configs/\w+\.py)(?::(\w+))?", text)})


@pytest.fixture(scope="module")
def commands():
  return doc_commands()


@pytest.fixture(scope="module")
def defined(commands):
  """What each command module defines, and the fields of each config file the docs name."""
  modules = sorted({c.program for c in commands if c.program != "make"})
  configs = sorted({config_key(v) for c in commands if (v := config_value(c))} - {None})
  configs = sorted(set(configs) | set(named_configs()))
  request = json.dumps(dict(modules=modules, configs=[k.split(":", 1) for k in configs]))
  done = subprocess.run([sys.executable, "-c", INSPECT], input=request, capture_output=True,
                        text=True, cwd=ROOT, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.splitlines()[-1])


def test_the_docs_show_the_main_commands(commands):
  shown = {(c.program, c.args[0] if c.args else "") for c in commands}
  for expected in [("make", "demo"), ("make", "test"), ("make", "demo-photo")]:
    assert expected in shown
  programs = {c.program for c in commands}
  assert {"experiments.transform", "experiments.evaluate", "experiments.build_bank",
          "research.benchmark"} <= programs


def test_every_module_and_flag_exists(commands, defined):
  problems = []
  for c in commands:
    if c.program == "make" or placeholder(c.program.rsplit(".", 1)[1]):
      continue
    module = defined["modules"][c.program]
    if module is None:
      problems.append(f"{c}: no module {c.program}")
      continue
    config = module["config"]
    if (value := config_value(c)) and (key := config_key(value)):
      loaded = defined["configs"][key]
      if "error" in loaded:
        problems.append(f"{c}: --config={value}: {loaded['error']}")
        continue
      config = loaded["fields"]
    for arg in c.args:
      if not arg.startswith("--"):
        continue
      name = arg[2:].split("=", 1)[0]
      if name.startswith("config."):
        field = name[len("config."):]
        if placeholder(field):
          continue
        if config is None:
          problems.append(f"{c}: --{name}, but {c.program} has no --config")
        elif field not in config:
          problems.append(f"{c}: --{name} is not a field of the config")
      elif name not in module["flags"] and name not in HELP_FLAGS and not (
          name.startswith("no") and name[2:] in module["bools"]):
        problems.append(f"{c}: --{name} is not a flag of {c.program}")
  assert not problems, "\n".join(problems)


def test_every_config_file_and_variant_named_anywhere_loads(defined):
  problems = [f"--config={key}: {defined['configs'][key]['error']}" for key in named_configs()
              if "error" in defined["configs"][key]]
  assert not problems, "\n".join(problems)


def test_every_config_field_named_anywhere_exists(defined):
  """`--config.FIELD` outside a command (prose, tables) must be a field of some config file."""
  every = {f for c in defined["configs"].values() for f in c.get("fields", [])}
  every |= {f for m in defined["modules"].values() if m and m["config"] for f in m["config"]}
  problems = []
  for path in COMMAND_DOCS:
    for text in code_texts(path.read_text()):
      for field in re.findall(r"--config\.([\w.]+)", text):
        if not placeholder(field) and field.rstrip(".") not in every:
          problems.append(f"{path.name}: `{text}`: --config.{field}")
  assert not problems, "\n".join(problems)


def test_every_make_target_and_variable_exists(commands):
  makefile = (ROOT / "Makefile").read_text()
  targets = {t for line in re.findall(r"^([\w .-]+):(?!=)", makefile, re.M) for t in line.split()}
  problems = []
  for c in commands:
    if c.program != "make":
      continue
    for arg in c.args:
      if "=" in arg:
        var = arg.split("=", 1)[0]
        if f"$({var})" not in makefile and f"$(value {var})" not in makefile:
          problems.append(f"{c}: the Makefile does not read {var}")
      elif not arg.startswith("-") and arg not in targets:
        problems.append(f"{c}: no make target {arg!r}")
  assert not problems, "\n".join(problems)


def test_scripts_the_docs_run_exist():
  missing = [f"{path.name}: {m.group(1)}" for path in COMMAND_DOCS
             for text in code_texts(path.read_text()) for m in SCRIPT.finditer(text)
             if not (ROOT / m.group(1)).is_file()]
  assert not missing, "\n".join(missing)


def test_the_docs_use_one_way_to_run_commands_and_no_machines_paths():
  """Commands are `python -m …` in the activated .venv (README says so once); no absolute
  path of a particular machine; no relative file links to files that do not exist."""
  problems = []
  for path in COMMAND_DOCS:
    text = path.read_text()
    for bad in ["/bin/python", "/work/", "/root/", "/home/", "/tmp/bench"]:
      if bad in text:
        problems.append(f"{path.name}: {bad}")
    for link in re.findall(r"\]\(((?!https?:|#)[^)\s]+)\)", text):
      if not (path.parent / link.split("#")[0]).exists():
        problems.append(f"{path.name}: link to {link}")
  assert not problems, "\n".join(problems)


DEVELOPMENT_LOG = ["this session", "the issue's target", "not traced", "was lent", "lent to",
                   "as the design asks", "new this session", "the machine was needed",
                   "session 1", "session 2", "other sessions"]


def test_the_docs_read_as_documentation_not_a_log():
  found = [f"{path.name}: {phrase!r}" for path in DOCS for phrase in DEVELOPMENT_LOG
           if phrase in path.read_text().lower()]
  found += [f"{path.name}: {m.group(0)!r}" for path in DOCS
            for m in re.finditer(r"\bissue[- ]\d+", path.read_text(), re.I)]
  assert not found, "\n".join(found)
