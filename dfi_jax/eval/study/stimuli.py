"""Two-alternative forced-choice (2AFC) stimuli for the perceptual study (paper Table 1).

Each main trial shows, for one test image and one edit, DFI's output and one baseline's output
side by side (sides drawn from a seeded RNG) under the question "Which image looks more like a
person <who is older>, while still being the same person?". Attention checks ask the same question
of an edit against a block-scrambled copy of itself: the intact face is the only one that is
"still the same person", so a rater who is looking gets it right whatever the edit's quality.

A study folder (one per shard) holds:

  index.html, study.js, style.css   the rating page; opens from file://, no server
  trials.js                         `window.STUDY = {study_id, shard_index, num_shards, trials}`:
                                    what the page shows (id, prompt, left/right image), no answers
  trials.json, trials.csv           the manifest: every trial with which side is DFI (main) or
                                    which side is correct (attention), and the source files
  images/<sha256[:16]>.<ext>        the stimuli, named by content so a name says nothing about
                                    the method (and identical images are stored once)

Inputs are run directories of `python -m experiments.transform` (`metrics.json`,
`edits/<image>__<attribute>__d<δ>.png`); baselines come from `<run>/baselines/
<image>__<attribute>__<method>.png` when a run has them, and from folders of
`<image>__<attribute>.png` (one folder per method).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from dfi_jax.base import run_state
from dfi_jax.outputs import figures
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.outputs import names as output_names
from dfi_jax.eval.study.trials import (
    Stimulus, StudyError, main_trials, num_attention, scramble, shard_dir, shard_trials,
    study_id)


PAGE_DIR = Path(__file__).parent / "page"
PAGE_FILES = ("index.html", "study.js", "style.css")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MANIFEST_COLUMNS = ("id", "kind", "attribute", "image", "run", "delta", "baseline", "left",
                    "right", "left_method", "right_method", "dfi_side", "correct_side",
                    "left_source", "right_source")
# How the question names each of the six edits; other attributes read "who is <attribute>".
PHRASES = {
    "older": "who is older",
    "smiling": "who is smiling",
    "mouth_open": "with their mouth open",
    "eyes_open": "with their eyes open",
    "eyeglasses": "wearing eyeglasses",
    "moustache": "with a moustache",
}


def prompt(attribute: str) -> str:
  """The 2AFC question for `attribute`."""
  phrase = PHRASES.get(attribute, "who is " + attribute.replace("_", " "))
  return f"Which image looks more like a person {phrase}, while still being the same person?"


def _split_name(path: Path, parts: int, where: str) -> list[str]:
  try:
    return output_names.split_name(path, parts)
  except ValueError:
    raise StudyError(f"{path}: expected a name of the form {where}") from None


def dfi_stimuli(run_dir: str | os.PathLike, label: str,
                deltas: Sequence[float] = ()) -> list[Stimulus]:
  """DFI's edits listed in `<run_dir>/metrics.json`, at `deltas` (default: the run's largest δ)."""
  run_dir = Path(run_dir)
  if (run_dir / "metrics.json").exists():  # a named pipe would block the read forever
    files_lib.check_input_file(run_dir / "metrics.json")
  try:
    record = json.loads((run_dir / "metrics.json").read_text())
    names = record["outputs"]["edits"]
  except OSError as e:
    raise StudyError(f"{run_dir}: not a transform run directory ({e.strerror}: "
                     "metrics.json)") from None
  except (ValueError, KeyError, TypeError) as e:
    raise StudyError(f"{run_dir}/metrics.json: no outputs.edits list ({e})") from None
  found = []
  for name in names:
    path = run_dir / name
    try:
      image, attribute, delta = output_names.parse_edit_name(path)
    except ValueError as e:
      raise StudyError(f"{path}: {e}") from None
    if not path.exists():
      raise StudyError(f"{path}: listed in metrics.json but missing")
    files_lib.check_input_file(path)
    found.append(Stimulus(label, image, attribute, "dfi", delta, path))
  if not found:
    raise StudyError(f"{run_dir}/metrics.json: the run wrote no edits")
  available = sorted({s.delta for s in found})
  wanted = [float(d) for d in deltas] or [available[-1]]
  missing = [d for d in wanted if d not in available]
  if missing:
    raise StudyError(f"{run_dir}: no edits at δ={missing}; the run has δ={available}")
  return [s for s in found if s.delta in wanted]


def run_baselines(run_dir: str | os.PathLike, label: str) -> list[Stimulus]:
  """`<run_dir>/baselines/<image>__<attribute>__<method>.<ext>`, if the run wrote any."""
  folder = Path(run_dir) / "baselines"
  if not folder.is_dir():
    return []
  out = []
  for path in sorted(folder.iterdir()):
    if path.suffix.lower() in IMAGE_EXTENSIONS:
      files_lib.check_input_file(path)
      image, attribute, method = _split_name(path, 3, "<image>__<attribute>__<method>.png")
      out.append(Stimulus(label, image, attribute, method, None, path))
  return out


def folder_baselines(folder: str | os.PathLike, method: str) -> list[Stimulus]:
  """Another method's outputs: `<folder>/<image>__<attribute>.<ext>` (png or jpeg)."""
  folder = Path(folder)
  if not folder.is_dir():
    raise StudyError(f"{folder}: baseline folder not found")
  if not method or method == "dfi" or "__" in method:
    raise StudyError(f"{folder}: bad method name {method!r} (non-empty, not 'dfi', no '__')")
  out = []
  for path in sorted(folder.iterdir()):
    if path.suffix.lower() in IMAGE_EXTENSIONS:
      files_lib.check_input_file(path)
      image, attribute = _split_name(path, 2, "<image>__<attribute>.png")
      out.append(Stimulus("", image, attribute, method, None, path))
  if not out:
    raise StudyError(f"{folder}: no .png/.jpg images named <image>__<attribute>.png")
  return out


def _png_bytes(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image_io.to_uint8(image)).save(buf, format="PNG", compress_level=6)
  return buf.getvalue()


def _check_replace(out: Path, manifest: dict, overwrite: bool) -> None:
  """Refuses to replace another study (its collected answers would no longer match its trials)
  or to write into a folder that holds something else, unless `overwrite`; rebuilding the same
  study is allowed (nothing changes)."""
  if overwrite or not out.exists():
    return
  if not out.is_dir():
    raise StudyError(f"{out}: is a file; expected a folder")
  existing = out / "trials.json"
  if not existing.exists():
    if any(out.iterdir()):
      raise StudyError(f"{out} is not empty and holds no study; choose a new --out_dir or pass "
                       "--overwrite to write into it")
    return
  try:
    old = json.loads(existing.read_text())
  except (OSError, ValueError):
    old = None
  if old != json.loads(json.dumps(manifest)):
    what = (f"study {old.get('study_id')}" if isinstance(old, dict) else
            "a study whose trials.json is unreadable")
    raise StudyError(f"{out} holds {what}, not this one; replacing it would orphan the answers "
                     "collected for it: choose a new --out_dir or pass --overwrite")


def _labels(run_dirs: Sequence[Path]) -> list[str]:
  labels: list[str] = []
  for r in run_dirs:
    base = Path(os.path.abspath(r)).name or "run"
    label, n = base, 1
    while label in labels:
      label, n = f"{base}-{n}", n + 1
    labels.append(label)
  return labels


def build_study(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                baseline_dirs: Sequence[str | os.PathLike] = (),
                baseline_names: Sequence[str] = (), deltas: Sequence[float] = (),
                seed: int = 0, num_shards: int = 1, shard_index: int = 0,
                attention_fraction: float = 0.1, min_attention: int = 3,
                overwrite: bool = False) -> dict:
  """Writes one shard's study folder (see the module docstring); returns its manifest.

  Keyword-only builder; its keywords:
    `baseline_dirs`, `baseline_names`: folders of another method's outputs and the method name of
      each (default: the folder's name);
    `deltas`: the DFI edits' δ to rate (default: each run's largest);
    `seed`, `num_shards`, `shard_index`: the study's draw, and which shard of it this host writes;
    `attention_fraction`, `min_attention`: how many attention checks the shard gets;
    `overwrite`: replace another study (or other files) in the folder.

  Rerunning the same command is cheap and safe: images already stored are skipped, and the
  manifest and page are replaced atomically, so an interrupted run leaves either the old folder
  or the new one. Another study in the folder is replaced only with `overwrite`.
  """
  out_dir = run_state.check_output_path(out_dir, "out_dir")
  _check_arguments(run_dirs, baseline_dirs, baseline_names, attention_fraction, min_attention)
  run_dirs = [Path(r) for r in run_dirs]
  labels = _labels(run_dirs)
  dfi, baselines = _gather_stimuli(run_dirs, labels, baseline_dirs, baseline_names, deltas)
  everything, unmatched = main_trials(dfi, baselines, seed)
  if not everything:
    raise StudyError("no DFI edit has a baseline of the same image and attribute; e.g. "
                     + (unmatched[0] if unmatched else "no edits"))
  mine = shard_trials(everything, num_shards, shard_index)
  sid = study_id(everything, seed)  # reads every source: a missing one fails before any copy

  stored: dict[str, bytes] = {}  # images/<name> -> content, written once the study is checked
  shard_rng = np.random.default_rng([seed, num_shards, shard_index])
  trials = [dict(t, prompt=prompt(t["attribute"]), left=_copy_image(stored, t["left_source"]),
                 right=_copy_image(stored, t["right_source"])) for t in mine]
  n_attention = num_attention(len(mine), attention_fraction, min_attention)
  trials += _attention_trials(mine, n_attention, shard_index, shard_rng, stored)
  order = shard_rng.permutation(len(trials))
  trials = [trials[int(i)] for i in order]

  manifest = dict(
      study_id=sid, seed=seed, num_shards=num_shards,
      shard_index=shard_index, num_main_trials_total=len(everything), num_main_trials=len(mine),
      num_attention_trials=n_attention,
      attention="intact edit against a block-scrambled copy of itself; correct = intact",
      runs=[dict(label=l, path=os.path.abspath(r)) for r, l in zip(run_dirs, labels)],
      methods=sorted({t["baseline"] for t in everything}),
      deltas=sorted({t["delta"] for t in everything}),
      unmatched=unmatched, trials=trials)
  out = shard_dir(out_dir, num_shards, shard_index)
  _check_replace(out, manifest, overwrite)
  _write_study(out, Path(out_dir), stored, manifest)
  return manifest


def _check_arguments(run_dirs: Sequence, baseline_dirs: Sequence, baseline_names: Sequence[str],
                     attention_fraction: float, min_attention: int) -> None:
  if not run_dirs:
    raise StudyError("no run directories given (--runs)")
  if baseline_names and len(baseline_names) != len(baseline_dirs):
    raise StudyError(f"{len(baseline_names)} baseline names for {len(baseline_dirs)} folders")
  if not 0 <= attention_fraction <= 1 or min_attention < 0:
    raise StudyError(f"attention_fraction={attention_fraction}, min_attention={min_attention}: "
                     "expected a fraction in [0, 1] and a count >= 0")


def _gather_stimuli(run_dirs: Sequence[Path], labels: Sequence[str],
                    baseline_dirs: Sequence[str | os.PathLike], baseline_names: Sequence[str],
                    deltas: Sequence[float]) -> tuple[list[Stimulus], list[Stimulus]]:
  """(DFI's edits, every baseline): the runs' own baselines, then the baseline folders'."""
  dfi, baselines = [], []
  for r, label in zip(run_dirs, labels):
    dfi += dfi_stimuli(r, label, deltas)
    baselines += run_baselines(r, label)
  names = list(baseline_names) or [Path(os.path.abspath(d)).name for d in baseline_dirs]
  for d, name in zip(baseline_dirs, names):
    baselines += folder_baselines(d, name)
  if not baselines:
    raise StudyError("no baseline images: the runs have no baselines/ folder and no "
                     "--baseline_dirs were given")
  return dfi, baselines


def _store_image(stored: dict[str, bytes], data: bytes, ext: str) -> str:
  """Adds `data` to `stored` under its content name `images/<sha256[:16]><ext>`; returns it."""
  name = f"images/{hashlib.sha256(data).hexdigest()[:16]}{ext.lower()}"
  stored[name] = data
  return name


def _copy_image(stored: dict[str, bytes], source: str) -> str:
  """Stores the image file `source`, decoded first: raters never meet a broken image."""
  path = Path(source)
  data = path.read_bytes()
  try:
    image_io.decode_image(data, path)
  except image_io.ImageError as e:
    raise StudyError(f"{e}; rerun the command that made it (a resumed run rewrites a "
                     "damaged output)") from None
  return _store_image(stored, data, path.suffix)


def _attention_trials(mine: Sequence[dict], n_attention: int, shard_index: int,
                      shard_rng: np.random.Generator, stored: dict[str, bytes]) -> list[dict]:
  """`n_attention` checks, each one side of a main trial (drawn from `shard_rng`) against a
  block-scrambled copy of itself, on a side drawn from `shard_rng`; images go to `stored`."""
  picks = shard_rng.choice(len(mine), size=n_attention, replace=n_attention > len(mine))
  trials = []
  for n, k in enumerate(picks):
    t = mine[int(k)]
    side = "left" if shard_rng.random() < 0.5 else "right"
    source = t[f"{side}_source"]
    intact_method = t[f"{side}_method"]
    foil = _store_image(stored, _png_bytes(scramble(image_io.load_image(source), shard_rng)),
                        ".png")
    intact = _copy_image(stored, source)
    correct = "left" if shard_rng.random() < 0.5 else "right"
    pair = (intact, foil) if correct == "left" else (foil, intact)
    methods = (intact_method, "foil") if correct == "left" else ("foil", intact_method)
    trials.append(dict(
        id=f"a{shard_index:03d}_{n:04d}", kind="attention", attribute=t["attribute"],
        image=t["image"], run=t["run"], delta=t["delta"] if intact_method == "dfi" else None,
        baseline=None, prompt=prompt(t["attribute"]), left=pair[0], right=pair[1],
        left_method=methods[0], right_method=methods[1], dfi_side=None, correct_side=correct,
        left_source=source if correct == "left" else None,
        right_source=source if correct == "right" else None))
  return trials


def _write_study(out: Path, out_dir: Path, stored: dict[str, bytes], manifest: dict) -> None:
  """The shard folder `out`: new images, the page, trials.csv, and trials.json last."""
  try:
    if out != out_dir:  # a shard's folder is the tool's own; --out_dir the user's
      files_lib.refuse_link(out)
    files_lib.make_folder(out / "images")
  except OSError as e:
    raise StudyError(f"{out}: cannot create it ({e.strerror})") from None
  for name, data in stored.items():
    if not (out / name).exists():  # content-addressed: present means written in full
      files_lib.atomic_write_bytes(out / name, data)
  _write_page(out, manifest)
  _write_csv(out / "trials.csv", manifest["trials"])
  files_lib.atomic_write_json(out / "trials.json", manifest)


def page_trials(manifest: dict) -> dict:
  """What `trials.js` gives the page: no methods, sides or sources."""
  return dict(study_id=manifest["study_id"], shard_index=manifest["shard_index"],
              num_shards=manifest["num_shards"],
              trials=[dict(id=t["id"], attribute=t["attribute"], prompt=t["prompt"],
                           left=t["left"], right=t["right"]) for t in manifest["trials"]])


def _write_page(out: Path, manifest: dict) -> None:
  for name in PAGE_FILES:
    files_lib.atomic_write_bytes(out / name, (PAGE_DIR / name).read_bytes())
  data = json.dumps(page_trials(manifest), indent=1, sort_keys=True)
  files_lib.atomic_write_text(out / "trials.js", "// Generated by dfi_jax.eval.study.stimuli.\n"
                             f"window.STUDY = {data};\nwindow.TRIALS = window.STUDY.trials;\n")


def _write_csv(path: Path, trials: Sequence[dict]) -> None:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore",
                          lineterminator="\n")
  writer.writeheader()
  for t in trials:
    writer.writerow({k: "" if t.get(k) is None else t[k] for k in MANIFEST_COLUMNS})
  files_lib.atomic_write_text(path, buf.getvalue())


def write_shard_index(out_dir: str | os.PathLike, study: str,
                      shards: Sequence[tuple[int, int]]) -> Path:
  """`out_dir/index.html`: one link per shard's rating page (`shard_dir`), with its counts of
  main and attention trials (`shards[k]`), for a study built one shard per host."""
  n = len(shards)
  rows = [[f"{shard_dir('.', n, k).as_posix()}/index.html", main, attention]
          for k, (main, attention) in enumerate(shards)]
  path = Path(out_dir) / "index.html"
  figures.write_index_html(path, f"Study {study}: {n} shards", [dict(
      heading="Shards (one rater pool each)",
      text="Open one shard's page per rater pool; study_analyze reads them all from this folder.",
      table=dict(columns=["page", "main trials", "attention checks"], rows=rows))])
  return path
