"""Size of the functions of dfi_jax/, read from the source (nothing is imported):
`python tools/code_metrics.py` prints the longest functions and every function with more than
`MAX_PARAMS` parameters.

Those with more than `MAX_PARAMS` are split in two lists. A *documented keyword-only builder*
takes at most `MAX_PARAMS` positional parameters, and its docstring names every keyword-only one
(and its `**kwargs`), as `` `name` `` or as an Args entry `name:`: a caller names each of those
at the call, and the docstring says what each does. Every other one is counted as too many."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path
from typing import Iterator, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
MAX_PARAMS = 7
# Config files are lists of field assignments, not logic: listed apart (`--top` skips them).
CONFIGS = "dfi_jax/configs/"


class Function(NamedTuple):
  where: str  # "file:line name"
  lines: int
  positional: int  # without self/cls
  keyword: int  # keyword-only, plus one for **kwargs
  documented: bool  # every keyword-only parameter named in the docstring


def _documented(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
  """Whether the docstring names each keyword-only parameter (and `**kwargs`)."""
  names = [a.arg for a in node.args.kwonlyargs]
  if node.args.kwarg is not None:
    names.append(node.args.kwarg.arg)
  doc = ast.get_docstring(node) or ""
  return bool(names) and all(
      f"`{n}`" in doc or re.search(rf"^\s*{re.escape(n)}\s*:", doc, re.MULTILINE)
      for n in names)


def functions(root: Path = ROOT, package: str = "dfi_jax") -> Iterator[Function]:
  """Every function (and method) below `root/package`."""
  for path in sorted((root / package).rglob("*.py")):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        positional = len(a.posonlyargs) + len(a.args) - (1 if a.args and a.args[0].arg in (
            "self", "cls") else 0)
        yield Function(f"{path.relative_to(root).as_posix()}:{node.lineno} {node.name}",
                       node.end_lineno - node.lineno + 1, positional,
                       len(a.kwonlyargs) + (a.kwarg is not None), _documented(node))


def builders_and_too_many(found: list[Function]) -> tuple[list[Function], list[Function]]:
  """Functions over `MAX_PARAMS` parameters: (documented keyword-only builders, the others)."""
  many = [f for f in found if f.positional + f.keyword > MAX_PARAMS]
  builders = [f for f in many if f.positional <= MAX_PARAMS and f.documented]
  return builders, [f for f in many if f not in builders]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--top", type=int, default=10)
  args = parser.parse_args()
  found = list(functions())
  print(f"{len(found)} functions in dfi_jax/")
  configs = [f for f in found if f.where.startswith(CONFIGS)]
  found = [f for f in found if not f.where.startswith(CONFIGS)]
  for f in configs:
    if f.lines > 60:
      print(f"  (config file, not counted: {f.lines} lines  {f.where})")
  print(f"longest {args.top}:")
  for f in sorted(found, key=lambda f: -f.lines)[:args.top]:
    print(f"  {f.lines:4d} lines  {f.where}")
  builders, many = builders_and_too_many(found)
  order = lambda f: -(f.positional + f.keyword)  # noqa: E731
  print(f"functions with > {MAX_PARAMS} parameters: {len(many)} "
        f"({sum(1 for f in many if f.positional > MAX_PARAMS)} with > {MAX_PARAMS} positional)")
  for f in sorted(many, key=order):
    print(f"  {f.positional:2d} positional + {f.keyword:2d} keyword-only  {f.where}")
  print(f"documented keyword-only builders with > {MAX_PARAMS} parameters (not counted above): "
        f"{len(builders)}")
  for f in sorted(builders, key=order):
    print(f"  {f.positional:2d} positional + {f.keyword:2d} keyword-only  {f.where}")


if __name__ == "__main__":
  main()
