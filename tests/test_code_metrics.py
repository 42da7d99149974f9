"""tools/code_metrics.py: what counts as a function with too many parameters."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import code_metrics  # noqa: E402

SOURCE = '''
def eight(a, b, c, d, e, f, g, h):
  return a


def builder(a, b, *, c=1, d=2, e=3, f=4, g=5, **rest):
  """Keyword-only builder; its keywords:
    `c`, `d`: two settings;
    e: an Args entry;
    f: another;
    `g`, `rest`: the last.
  """


def undocumented(a, b, *, c=1, d=2, e=3, f=4, g=5, h=6):
  """Mentions c and d in prose only."""


def hidden(a, b, c, d, e, f, g, **more):
  """Takes further settings, unnamed: eight parameters with them."""


def sloppy(a, b, *, c=1, d=2, e=3, f=4, g=5, **rest):
  """`c`, `d`, `e`, `f`, `g`: named; what else it takes is not."""


def long_positional(a, b, c, d, e, f, g, h, *, i=1):
  """`i`: documented, but eight positional parameters."""


class Thing:
  def method(self, a, b, c, d, e, f, g):
    x = 1
    y = 2
    return x + y
'''


def test_only_documented_keyword_only_builders_are_listed_apart(tmp_path):
  (tmp_path / "dfi_jax").mkdir()
  (tmp_path / "dfi_jax" / "m.py").write_text(SOURCE)
  found = {f.where.split()[-1]: f for f in code_metrics.functions(tmp_path)}
  assert (found["method"].positional, found["method"].keyword) == (7, 0)  # self not counted
  assert found["method"].lines == 4
  assert (found["hidden"].positional, found["hidden"].keyword) == (7, 1)  # **more counts
  builders, many = code_metrics.builders_and_too_many(list(found.values()))
  assert [f.where.split()[-1] for f in builders] == ["builder"]
  assert sorted(f.where.split()[-1] for f in many) == [
      "eight", "hidden", "long_positional", "sloppy", "undocumented"]
