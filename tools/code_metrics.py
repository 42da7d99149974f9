"""Size of the functions of dfi_jax/, read from the source (nothing is imported):
`python tools/code_metrics.py` prints the longest functions and every function with more than
`MAX_PARAMS` parameters (keyword-only ones counted apart, for documented builders)."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_PARAMS = 7
# Config files are lists of field assignments, not logic: listed apart (`--top` skips them).
CONFIGS = "dfi_jax/configs/"


def functions(root: Path = ROOT, package: str = "dfi_jax"):
  """(file:line name, lines, positional params, keyword-only params) of every function."""
  for path in sorted((root / package).rglob("*.py")):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        positional = len(a.posonlyargs) + len(a.args) - (1 if a.args and a.args[0].arg in (
            "self", "cls") else 0)
        yield (f"{path.relative_to(root)}:{node.lineno} {node.name}",
               node.end_lineno - node.lineno + 1, positional, len(a.kwonlyargs))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--top", type=int, default=10)
  args = parser.parse_args()
  found = list(functions())
  print(f"{len(found)} functions in dfi_jax/")
  configs = [f for f in found if f[0].startswith(CONFIGS)]
  found = [f for f in found if not f[0].startswith(CONFIGS)]
  for where, lines, _, _ in configs:
    if lines > 60:
      print(f"  (config file, not counted: {lines} lines  {where})")
  print(f"longest {args.top}:")
  for where, lines, _, _ in sorted(found, key=lambda f: -f[1])[:args.top]:
    print(f"  {lines:4d} lines  {where}")
  many = [f for f in found if f[2] + f[3] > MAX_PARAMS]
  print(f"functions with > {MAX_PARAMS} parameters: {len(many)} "
        f"({sum(1 for f in many if f[2] > MAX_PARAMS)} with > {MAX_PARAMS} positional)")
  for where, _, positional, keyword in sorted(many, key=lambda f: -(f[2] + f[3])):
    print(f"  {positional:2d} positional + {keyword:2d} keyword-only  {where}")


if __name__ == "__main__":
  main()
