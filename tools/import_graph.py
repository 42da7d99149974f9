"""The import graph of dfi_jax/, experiments/ and research/, read from the source (nothing is
imported): `python tools/import_graph.py` prints its cycles and every import against the
layer order of WORKSPACE.md's "Code map" and every import of the project's own modules inside a
function of dfi_jax/, and exits 1 when there is any."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dfi_jax", "experiments", "research")
# Lower layers never import higher ones: the commands (experiments/, research/) and the editor
# page (dfi_jax/serve) → runs → the config files (read by runs, e.g. api's default) → eval → dfi
# → nets, data, outputs (names, figures, the run record) → the shared base (dfi_jax/base/).
LAYERS = {"dfi_jax.base": 0, "dfi_jax.nets": 1, "dfi_jax.data": 1,
          "dfi_jax.outputs": 1, "dfi_jax.dfi": 2, "dfi_jax.eval": 3, "dfi_jax.configs": 4, "experiments.configs": 4,
          "dfi_jax.runs": 5, "dfi_jax.serve": 6, "experiments": 6, "research": 6}


def modules(root: Path = ROOT) -> dict[str, Path]:
  """Dotted module name -> file, for every .py file of `PACKAGES` under `root`."""
  found = {}
  for package in PACKAGES:
    for path in sorted((root / package).rglob("*.py")):
      name = ".".join(path.relative_to(root).with_suffix("").parts)
      found[name.removesuffix(".__init__")] = path
  return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
  """Module -> the modules of `PACKAGES` it imports (anywhere in the file)."""
  mods = modules(root)
  edges: dict[str, set[str]] = {m: set() for m in mods}
  for name, path in mods.items():
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          parts = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(parts + ([base] if base else []))
        targets = [f"{base}.{a.name}" for a in node.names]
      else:
        continue
      for target in targets:
        while target and target not in mods:
          target = target.rpartition(".")[0]
        if target and target != name:
          edges[name].add(target)
  return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
  for v in sorted(edges):
    if v not in index:
      visit(v)
  return found


def layer(module: str) -> int | None:
  """The layer of `module` (the longest matching prefix in `LAYERS`), None outside them."""
  best = None
  for prefix, level in LAYERS.items():
    if (module == prefix or module.startswith(prefix + ".")) and (
        best is None or len(prefix) > len(best[0])):
      best = (prefix, level)
  return None if best is None else best[1]


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
  """Imports from a lower layer into a higher one."""
  return sorted((a, b) for a, targets in edges.items() for b in targets
                if layer(a) is not None and layer(b) is not None and layer(b) > layer(a))


def deferred(root: Path = ROOT) -> list[tuple[str, int]]:
  """Imports of the project's own modules inside a function of dfi_jax/ (module, line), other
  than the package's own lazy `dfi_jax.edit` (dfi_jax/__init__.py): none may hide a cycle."""
  found = []
  for name, path in modules(root).items():
    if not name.startswith("dfi_jax."):  # the package itself: its lazy API is allowed
      continue
    for fn in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for node in ast.walk(fn):
          names = []
          if isinstance(node, ast.ImportFrom):  # a relative import is always the project's own
            names = ["dfi_jax"] if node.level else [node.module or ""]
          elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
          if any(n.split(".")[0] in PACKAGES for n in names):
            found.append((name, node.lineno))
  return sorted(set(found))


def main() -> int:
  edges = graph()
  found, against, inner = cycles(edges), upward(edges), deferred()
  print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports")
  for component in found:
    print("cycle:", " ↔ ".join(component))
  for a, b in against:
    print(f"against the layers: {a} imports {b}")
  for module, line in inner:
    print(f"an import inside a function: {module}, line {line}")
  return 1 if found or against or inner else 0


if __name__ == "__main__":
  sys.exit(main())
