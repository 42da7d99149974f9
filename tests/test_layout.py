"""The package layout of WORKSPACE.md's "Code map": no import cycle, no import against layers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import import_graph  # noqa: E402


def test_the_tree_has_no_import_cycle_and_no_import_against_the_layers():
  edges = import_graph.graph()
  assert len(edges) > 50  # the whole tree was read
  assert import_graph.cycles(edges) == []
  assert import_graph.upward(edges) == []
  assert import_graph.deferred() == []


def test_the_checks_find_a_cycle_and_an_import_against_the_layers(tmp_path):
  files = {"dfi_jax/__init__.py": "", "dfi_jax/dfi/__init__.py": "", "dfi_jax/runs/__init__.py": "",
           "dfi_jax/dfi/a.py": "def f():\n  from dfi_jax.runs import b\n",
           "dfi_jax/runs/b.py": "from dfi_jax.dfi import a\nfrom . import c\n",
           "dfi_jax/runs/c.py": "import numpy\nimport dfi_jax.dfi\n"}
  for name, text in files.items():
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
  edges = import_graph.graph(tmp_path)
  assert edges["dfi_jax.runs.b"] == {"dfi_jax.dfi.a", "dfi_jax.runs.c"}
  assert edges["dfi_jax.runs.c"] == {"dfi_jax.dfi"}
  assert import_graph.cycles(edges) == [["dfi_jax.dfi.a", "dfi_jax.runs.b"]]
  assert import_graph.upward(edges) == [("dfi_jax.dfi.a", "dfi_jax.runs.b")]
  assert import_graph.deferred(tmp_path) == [("dfi_jax.dfi.a", 2)]
