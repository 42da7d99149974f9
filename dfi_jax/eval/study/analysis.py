"""Response files of the 2AFC study → Table-1-style preference ratios with bootstrap CIs.

For each edit (baseline method, attribute, δ), over the responses of raters who passed the
attention checks:

  fraction = DFI chosen / responses          ratio = DFI chosen / baseline chosen

(paper Table 1 reports the ratio). The 95 % interval is a percentile bootstrap of the fraction,
resampling either responses (`unit="response"`; for a 0/1 outcome resampling n responses with
replacement is exactly a Binomial(n, k/n) draw, which is what is drawn) or raters
(`unit="rater"`: each resample draws raters with replacement and pools their responses, which
widens the interval when raters disagree with each other). The ratio's interval is the
fraction's mapped through f / (1 − f), which is monotone, so it is that bootstrap's own
percentile interval.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from dfi_jax.base import run_state
from dfi_jax.base import files as files_lib
from dfi_jax.eval.study import chart

SIDES = ("left", "right")


class AnalysisError(ValueError):
  """A missing or malformed manifest or response file; one line naming the file."""


class Study(NamedTuple):
  study_id: str
  trials: dict  # trial id -> manifest record (see stimuli.build_study)


def load_study(paths: Sequence[str | os.PathLike]) -> Study:
  """Manifests from study folders (`trials.json`, or `shard_*/trials.json` below) or files."""
  files: list[Path] = []
  for p in map(Path, paths):
    if p.is_file():
      files.append(p)
    elif (p / "trials.json").is_file():
      files.append(p / "trials.json")
    elif p.is_dir() and sorted(p.glob("shard_*/trials.json")):
      files += sorted(p.glob("shard_*/trials.json"))
    else:
      raise AnalysisError(f"{p}: no trials.json (nor shard_*/trials.json) found")
  study_id, trials = None, {}
  for f in files:
    files_lib.check_input_file(f)  # a named pipe would block the read forever
    try:
      manifest = json.loads(f.read_text())
      sid, records = manifest["study_id"], manifest["trials"]
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise AnalysisError(f"{f}: not a study manifest ({e})") from None
    if study_id not in (None, sid):
      raise AnalysisError(f"{f}: study {sid}, but the other manifests are study {study_id}")
    study_id = sid
    for t in records:
      trials[t["id"]] = t
  if study_id is None:
    raise AnalysisError("no manifests given (--study)")
  return Study(study_id, trials)


def response_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
  """Files as given, and every `*.csv` / `*.json` inside given folders."""
  out = []
  for p in map(Path, paths):
    if p.is_dir():
      out += sorted(f for f in p.iterdir() if f.suffix.lower() in (".csv", ".json"))
    elif p.exists():
      out.append(p)
    else:
      raise AnalysisError(f"{p}: no such response file or folder")
  for f in out:  # before reading any: a named pipe would block, a device never end
    files_lib.check_input_file(f)
  if not out:
    raise AnalysisError(f"no response files (.csv or .json) in {[str(p) for p in paths]}")
  return out


def read_responses(path: str | os.PathLike) -> list[dict]:
  """One exported file (the page's CSV or JSON, or a JSON list of such exports) as rows.

  Rows: `{study_id, rater, trial_id, choice, left, right, rt_ms, file}`.
  """
  path = Path(path)
  try:
    text = path.read_text(encoding="utf-8-sig")
  except (OSError, UnicodeError) as e:
    raise AnalysisError(f"{path}: cannot read ({e})") from None
  rows = []
  if path.suffix.lower() == ".json":
    try:
      data = json.loads(text)
    except ValueError as e:
      raise AnalysisError(f"{path}: not JSON ({e})") from None
    for export in data if isinstance(data, list) else [data]:
      if not isinstance(export, dict) or not isinstance(export.get("responses"), list):
        raise AnalysisError(f"{path}: expected the page's export, an object with 'responses'")
      for n, r in enumerate(export["responses"]):
        if not isinstance(r, dict):
          raise AnalysisError(f"{path}: response {n + 1} is a JSON {type(r).__name__}; "
                              "expected an object")
        rows.append(dict(r, study_id=r.get("study_id", export.get("study_id")),
                         rater=r.get("rater", export.get("rater"))))
  else:
    reader = csv.DictReader(io.StringIO(text))
    try:
      rows = list(reader)
    except csv.Error as e:  # e.g. a field over csv.field_size_limit()
      raise AnalysisError(f"{path}: not a response CSV (line {reader.line_num}: {e})") from None
  need = ("study_id", "rater", "trial_id", "choice")
  out = []
  for n, r in enumerate(rows):
    missing = [k for k in need if r.get(k) in (None, "")]
    if missing:
      raise AnalysisError(f"{path}: response {n + 1} has no {', '.join(missing)}")
    typed = [k for k in (*need, "left", "right") if r.get(k) is not None and (
        not isinstance(r[k], (str, int)) or isinstance(r[k], bool))]
    if typed:
      raise AnalysisError(f"{path}: response {n + 1} has {typed[0]} {r[typed[0]]!r}; expected "
                          "a string")
    if r["choice"] not in SIDES:
      raise AnalysisError(f"{path}: response {n + 1} has choice {r['choice']!r}; expected "
                          "'left' or 'right'")
    try:
      rt = float(r["rt_ms"]) if r.get("rt_ms") not in (None, "") else None
    except (TypeError, ValueError):
      raise AnalysisError(f"{path}: response {n + 1} has rt_ms {r['rt_ms']!r}; expected a "
                          "number") from None
    out.append(dict(study_id=str(r["study_id"]), rater=str(r["rater"]),
                    trial_id=str(r["trial_id"]), choice=r["choice"], left=r.get("left"),
                    right=r.get("right"), rt_ms=rt, file=str(path)))
  return out


def bootstrap_fraction(successes: int, n: int, rng: np.random.Generator,
                       num_resamples: int = 2000, level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap interval of `successes / n` (resampling n 0/1 outcomes)."""
  if n <= 0 or not 0 <= successes <= n:
    raise ValueError(f"need 0 <= successes <= n and n > 0; got {successes}, {n}")
  draws = rng.binomial(n, successes / n, size=num_resamples) / n
  lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
  return float(lo), float(hi)


def bootstrap_fraction_by_rater(successes: Sequence[int], counts: Sequence[int],
                                rng: np.random.Generator, num_resamples: int = 2000,
                                level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap of `sum(successes) / sum(counts)` resampling raters (one entry each)."""
  k, n = np.asarray(successes, np.int64), np.asarray(counts, np.int64)
  if k.shape != n.shape or k.ndim != 1 or not len(n) or (n <= 0).any() or (k < 0).any() or (
      k > n).any():
    raise ValueError(f"need per-rater 0 <= successes <= counts, counts > 0; got {k}, {n}")
  pick = rng.integers(0, len(n), size=(num_resamples, len(n)))
  draws = k[pick].sum(1) / n[pick].sum(1)
  lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
  return float(lo), float(hi)


def odds(fraction: float) -> float:
  """f / (1 − f): DFI chosen per baseline chosen; inf when every choice was DFI."""
  return math.inf if fraction >= 1 else fraction / (1 - fraction)


def _check_against_manifest(r: dict, trial: dict) -> None:
  for side in SIDES:
    if r[side] not in (None, "") and r[side] != trial[side]:
      raise AnalysisError(f"{r['file']}: trial {r['trial_id']} showed {side}={r[side]!r} but "
                          f"the manifest has {trial[side]!r}")


def separate_raters(responses: list[dict]) -> list[dict]:
  """Two people who typed the same rater ID are kept apart, loudly: a file whose answers under
  an ID differ from an earlier file's on a trial both answered (choice or time) is another
  person, renamed `ID#2` (`#3`, …) with a warning naming both files. The same export given
  twice (its CSV and its JSON) agrees on every shared trial and stays one rater."""
  answers: dict[tuple[str, str], dict[str, tuple]] = {}  # (rater, file) -> trial -> answer
  for r in responses:
    answers.setdefault((r["rater"], r["file"]), {}).setdefault(
        r["trial_id"], (r["choice"], r["rt_ms"]))
  people: dict[str, list[tuple[str, str, dict]]] = {}  # rater -> [(new id, first file, answers)]
  renamed: dict[tuple[str, str], str] = {}
  for (rater, file), mine in answers.items():
    known = people.setdefault(rater, [])
    same = next((p for p in known if all(p[2][t] == a for t, a in mine.items() if t in p[2])),
                None)
    if same is None:
      same = (rater if not known else f"{rater}#{len(known) + 1}", file, {})
      known.append(same)
      if same[0] != rater:
        run_state.warn(f"{file}: rater {rater!r} answered differently from rater {rater!r} in "
                       f"{known[0][1]}; two people typed the same ID? kept apart as "
                       f"{same[0]!r}")
    same[2].update(mine)
    renamed[(rater, file)] = same[0]
  return [dict(r, rater=renamed[(r["rater"], r["file"])]) for r in responses]


def analyse(study: Study, responses: Iterable[dict], *, threshold: float = 0.8,
            num_resamples: int = 2000, seed: int = 0, level: float = 0.95,
            unit: str = "response") -> dict:
  """Drops raters below `threshold` on attention checks (or with none), then tabulates.

  `unit` is what the bootstrap resamples: "response" or "rater".

  Returns `{study_id, threshold, raters: {...}, responses: {...}, edits: [...], overall: [...]}`
  where each edit row is `{method, attribute, delta, n, dfi, baseline, fraction, fraction_ci,
  ratio, ratio_ci}` (ratio None = infinite: every response chose DFI).
  """
  if unit not in ("response", "rater"):
    raise ValueError(f"unit={unit!r}: expected 'response' or 'rater'")
  seen, duplicates, conflicts = _unique_responses(study, separate_raters(list(responses)))
  raters = _rater_table(study, seen, threshold)
  kept = {r["rater"] for r in raters if r["kept"]}
  groups, pooled = _votes(study, seen, kept)
  rng = np.random.default_rng(seed)
  bootstrap = (unit, rng, num_resamples, level)
  edits = [_row(groups[k], *bootstrap, method=k[0], attribute=k[1], delta=k[2])
           for k in sorted(groups, key=lambda k: (k[0], k[1], k[2] if k[2] is not None else 0))]
  overall = [_row(pooled[m], *bootstrap, method=m, attribute="all", delta=None)
             for m in sorted(pooled)]
  dropped = [r for r in raters if not r["kept"]]
  return dict(
      study_id=study.study_id, threshold=threshold, level=level, num_resamples=num_resamples,
      seed=seed, unit=unit,
      raters=dict(total=len(raters), kept=len(kept), dropped=len(dropped),
                  dropped_no_checks=sum(r["attention_total"] == 0 for r in dropped),
                  per_rater=raters),
      responses=dict(read=len(seen) + duplicates, duplicates=duplicates,
                     conflicting_duplicates=conflicts,
                     used=sum(e["n"] for e in edits)),
      edits=edits, overall=overall)


def _unique_responses(study: Study, responses: Sequence[dict]) -> tuple[dict, int, int]:
  """({(rater, trial id): response}, duplicates dropped, duplicates that chose otherwise);
  every response checked against the manifests."""
  seen: dict[tuple, dict] = {}
  duplicates = conflicts = 0
  for r in responses:
    if r["study_id"] != study.study_id:
      raise AnalysisError(f"{r['file']}: responses to study {r['study_id']}, but the manifests "
                          f"are study {study.study_id}")
    trial = study.trials.get(r["trial_id"])
    if trial is None:
      raise AnalysisError(f"{r['file']}: trial {r['trial_id']} is not in the manifests")
    _check_against_manifest(r, trial)
    key = (r["rater"], r["trial_id"])
    if key in seen:  # the same export given twice (e.g. its CSV and its JSON): keep the first
      duplicates += 1
      conflicts += seen[key]["choice"] != r["choice"]
      continue
    seen[key] = r
  return seen, duplicates, conflicts


def _rater_table(study: Study, seen: dict, threshold: float) -> list[dict]:
  """One row per rater (sorted): responses, attention accuracy, kept (accuracy ≥ threshold)."""
  by_rater: dict[str, list[dict]] = {}
  for r in seen.values():
    by_rater.setdefault(r["rater"], []).append(r)
  raters = []
  for rater in sorted(by_rater):
    checks = [r for r in by_rater[rater] if study.trials[r["trial_id"]]["kind"] == "attention"]
    correct = sum(r["choice"] == study.trials[r["trial_id"]]["correct_side"] for r in checks)
    accuracy = correct / len(checks) if checks else None
    passed = accuracy is not None and accuracy >= threshold
    rts = [r["rt_ms"] for r in by_rater[rater] if r["rt_ms"] is not None]
    raters.append(dict(rater=rater, responses=len(by_rater[rater]), attention_total=len(checks),
                       attention_correct=correct, attention_accuracy=accuracy, kept=passed,
                       median_rt_ms=float(np.median(rts)) if rts else None))
  return raters


def _votes(study: Study, seen: dict, kept: set[str]) -> tuple[dict, dict]:
  """The kept raters' main-trial votes `(rater, chose DFI)`, grouped by (baseline, attribute, δ)
  and pooled by baseline."""
  groups: dict[tuple, list[tuple[str, bool]]] = {}
  pooled: dict[str, list[tuple[str, bool]]] = {}
  for r in seen.values():
    t = study.trials[r["trial_id"]]
    if r["rater"] in kept and t["kind"] == "main":
      chose_dfi = r["choice"] == t["dfi_side"]
      vote = (r["rater"], chose_dfi)
      groups.setdefault((t["baseline"], t["attribute"], t["delta"]), []).append(vote)
      pooled.setdefault(t["baseline"], []).append(vote)
  return groups, pooled


def _row(votes: list[tuple[str, bool]], unit: str, rng: np.random.Generator,
         num_resamples: int, level: float, **key) -> dict:
  """One table row `key` + counts, fraction and ratio with their bootstrap intervals."""
  n, k = len(votes), sum(chose for _, chose in votes)
  if unit == "rater":
    per_rater: dict[str, list[int]] = {}
    for rater, chose in votes:
      per_rater.setdefault(rater, [0, 0])[0] += chose
      per_rater[rater][1] += 1
    ks, ns = zip(*per_rater.values())
    lo, hi = bootstrap_fraction_by_rater(ks, ns, rng, num_resamples, level)
  else:
    lo, hi = bootstrap_fraction(k, n, rng, num_resamples, level)
  return dict(key, n=n, dfi=k, baseline=n - k, fraction=k / n, fraction_ci=[lo, hi],
              ratio=k / (n - k) if k < n else None,
              ratio_ci=[_finite(odds(lo)), _finite(odds(hi))])


def _finite(x: float) -> float | None:
  return None if math.isinf(x) else x


def _fmt_ratio(x: float | None) -> str:
  return "∞" if x is None else f"{x:.2f}"


def table_markdown(result: dict) -> str:
  """The Table-1-style Markdown table, with a line on raters kept and dropped."""
  pct = round(100 * result["level"])
  lines = [f"| edit | vs | δ | responses | DFI chosen | ratio DFI : baseline ({pct}% CI) "
           f"| fraction DFI ({pct}% CI) |", "|---|---|---|---|---|---|---|"]
  for e in result["edits"] + result["overall"]:
    delta = "" if e["delta"] is None else f"{e['delta']:g}"
    lines.append(
        f"| {e['attribute']} | {e['method']} | {delta} | {e['n']} | {e['dfi']} | "
        f"{_fmt_ratio(e['ratio'])} [{_fmt_ratio(e['ratio_ci'][0])}, "
        f"{_fmt_ratio(e['ratio_ci'][1])}] | {e['fraction']:.3f} [{e['fraction_ci'][0]:.3f}, "
        f"{e['fraction_ci'][1]:.3f}] |")
  r = result["raters"]
  lines += ["", f"Raters: {r['total']}, kept {r['kept']}, dropped {r['dropped']} "
            f"(attention accuracy < {result['threshold']:.0%}"
            + (f", {r['dropped_no_checks']} with no attention checks answered" if
               r["dropped_no_checks"] else "") + "). "
            f"Percentile bootstrap over {result['unit']}s, {result['num_resamples']} resamples, "
            f"seed {result['seed']}."]
  return "\n".join(lines) + "\n"


def write(result: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
  """`analysis.json`, `analysis.md` and `preference.png` in `out_dir` (all atomic)."""
  out = Path(out_dir)
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise AnalysisError(f"{out}: cannot create it ({e.strerror})") from None
  paths = dict(json=out / "analysis.json", markdown=out / "analysis.md",
               plot=out / "preference.png")
  files_lib.atomic_write_json(paths["json"], result)
  files_lib.atomic_write_text(paths["markdown"], "# Perceptual study: DFI against baselines\n\n"
                             + table_markdown(result))
  chart.plot(result, paths["plot"])
  return paths
