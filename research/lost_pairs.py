"""The judge's 2AFC pairs it gave to the pixel baseline, as pictures, for a person to look at.

  python -m research.lost_pairs --workdir=RUN [--out=FILE] [--all] [--tile=192]

RUN is an edit run on generated faces with the judge on (`experiments.evaluate`, or
`experiments.transform` without --inputs): its metrics.json rows hold `judge_prefers_dfi`, and
its edits/, baselines/ and originals/ the pictures. One row per pair the judge did not give to
DFI (`--all`: every pair): the input, the DFI edit, the pixel baseline, labelled with the
attribute and the judge's reason — DFI changed another attribute the baseline kept, or both kept
the others and the baseline's probability of the added attribute was higher (1.0 is float32's
saturated sigmoid). Writes FILE (default RUN/lost_pairs.png) atomically and prints one line per
pair.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from dfi_jax.data import image_io
from dfi_jax.outputs import figures
from dfi_jax.outputs import names as output_names
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "An edit run's folder (holds metrics.json).")
_OUT = flags.DEFINE_string("out", "", "The PNG to write ('' = WORKDIR/lost_pairs.png).")
_ALL = flags.DEFINE_bool("all", False, "Every judged pair, not only those DFI did not win.")
_TILE = flags.DEFINE_integer("tile", 192, "Each picture is enlarged to at least this side.")


def reason(row: dict) -> str:
  """Why the judge's 2AFC went the way it did for one metrics.json row (`add_judge_scores`'
  rule: keeping every other attribute first, then the added attribute's probability)."""
  keeps_d = row["judge_preservation"] == 1.0
  keeps_p = row["baseline_judge_preservation"] == 1.0
  if keeps_d != keeps_p:
    who = "DFI" if keeps_p else "pixel"
    changed = row.get("judge_changed") or "another attribute"
    return f"{who} changed {changed}" if who == "DFI" else "pixel changed another attribute"
  pixel = row.get("baseline_judge_probability")
  return (f"p DFI {row['judge_probability']:.5f}"
          + (f" vs pixel {pixel:.5f}" if pixel is not None else ""))


def pairs(metrics: dict, every: bool = False) -> list[dict]:
  """The judged rows of `metrics` (a run's metrics.json) DFI did not win (`every`: all)."""
  rows = [r for r in metrics.get("per_image", []) if "judge_prefers_dfi" in r]
  return rows if every else [r for r in rows if r["judge_prefers_dfi"] < 1.0]


def draw(workdir: Path, rows: list[dict], out: Path, tile: int = figures.MIN_TILE) -> None:
  """Input | DFI | pixel baseline per row of `rows`, labelled, saved to `out` (PNG)."""
  tiles, labels = [], []
  for r in rows:
    image, attribute = r["image"], r["attribute"]
    tiles.append([image_io.load_image(workdir / "originals" / f"{image}.png"),
                  image_io.load_image(workdir / output_names.edit_name(image, attribute,
                                                                       r["delta"])),
                  image_io.load_image(workdir / output_names.output_name(
                      image, attribute, "pixel", folder="baselines"))])
    labels.append(f"{image} {attribute}: {reason(r)}")
  figures.save_grid(out, tiles, row_labels=labels, col_labels=["input", "DFI", "pixel"],
                    min_tile=tile)


def main(argv):
  del argv
  if not _WORKDIR.value:
    raise ValueError("--workdir: expected an edit run's folder (it holds metrics.json)")
  if _TILE.value < 0:
    raise ValueError(f"--tile={_TILE.value}: expected a side in pixels >= 0")
  workdir = Path(_WORKDIR.value).expanduser()
  path = workdir / "metrics.json"
  try:
    metrics = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"--workdir={_WORKDIR.value}: cannot read {path} ({e})") from None
  rows = pairs(metrics, _ALL.value)
  judged = pairs(metrics, every=True)
  if not judged:
    raise ValueError(f"--workdir={_WORKDIR.value}: {path} has no judged pairs (a run on "
                     "generated faces with --config.judge on)")
  print(f"{len(judged) - len(rows) if not _ALL.value else len(judged)} of {len(judged)} pairs "
        f"{'judged' if _ALL.value else 'to DFI'}; drawn: {len(rows)}")
  for r in rows:
    print(f"{r['image']} {r['attribute']}: {reason(r)}")
  if rows:
    out = Path(_OUT.value).expanduser() if _OUT.value else workdir / "lost_pairs.png"
    draw(workdir, rows, out, _TILE.value)
    print(f"wrote {out}")


if __name__ == "__main__":
  cli.run_main(main)
