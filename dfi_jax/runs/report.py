"""What an edit run writes: each edit's PNG (pasted back into an own photo), `metrics.json`
with the judge's and the probe's scores, `grid.png` and `index.html`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from dfi_jax.base import run_state
from dfi_jax.data import bank_cache
from dfi_jax.data.datasets import common
from dfi_jax.outputs import figures
from dfi_jax.data import fitting
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.data import sources
from dfi_jax.dfi import pipeline
from dfi_jax.eval import judge as judge_lib
from dfi_jax.eval import metrics as metrics_lib
from dfi_jax.eval import probe as probe_lib
from dfi_jax.outputs import names as output_names
from dfi_jax.outputs import record as run_record
from dfi_jax.runs import photo_outputs
from dfi_jax.runs import photos as photos_lib


def compose_photo(original: np.ndarray, square: np.ndarray, edit: np.ndarray,
                  placement: fitting.Placement) -> np.ndarray:
  """The edit at the photo's own size: original + the upsampled change (edit − fitted input)."""
  change = fitting.unfit_square(np.clip(0.5 + (edit - square) / 2, 0, 1), placement)
  return np.clip(original + (change - 0.5) * 2, 0.0, 1.0).astype(np.float32)


def photo_result(tests: sources.TestImages, i: int, result: np.ndarray) -> np.ndarray:
  """Test image i's `[S, S, 3]` result at its own photo's size (others: unchanged)."""
  if tests.faces is not None:  # a face aligned into the bank's frame (photos.py)
    return photos_lib.to_photo(tests, i, result)
  if tests.originals is not None:
    return compose_photo(tests.originals[i], tests.images[i], result, tests.placements[i])
  return result


def edit_file(tests: sources.TestImages, item: tuple[int, str], delta: float) -> str:
  """`edits/<image>__<attribute>__d<δ>.png` of test image `item[0]` under edit `item[1]`."""
  return output_names.edit_name(tests.names[item[0]], item[1], delta)


def save_edit(workdir: Path, tests: sources.TestImages, item: tuple[int, str], delta: float,
              result: np.ndarray, kept: bool = False) -> None:
  """One edit's PNG (own photos: at the photo's size), replacing any older file of that name;
  `kept`: a result kept from earlier, its PNG rewritten only if missing or other bytes."""
  path = workdir / edit_file(tests, item, delta)
  files_lib.make_folder(path.parent)
  data = image_io.png_bytes(photo_result(tests, item[0], result))
  if kept:
    files_lib.restore_file(path, data)
  else:
    files_lib.atomic_write_bytes(path, data)


def pixel_baseline(x: np.ndarray, bank_images, neighbour_sets: dict, i: int, name: str,
                   delta: float) -> np.ndarray:
  """`[S, S, 3]` x + δ·(mean target − mean source pixels) of test image i's neighbours for
  edit `name`; a combined edit (`a+b`) adds each part's change."""
  one = lambda nb, d: metrics_lib.pixel_baseline(  # noqa: E731
      x, bank_images, np.asarray(nb.source[i]), np.asarray(nb.target[i]), d)
  if "+" not in name:
    return one(neighbour_sets[name], delta)
  change = np.zeros_like(x)
  for part in name.split("+"):
    change += one(neighbour_sets[part], delta) - x
  return np.clip(x + change, 0.0, 1.0)


class Results(NamedTuple):
  """What an edit run hands `write_outputs`: `[len(deltas), len(items)]` results of `items`
  ((test image, attribute), edit-major) and what the run used to make them."""
  tests: sources.TestImages
  items: list
  edits: pipeline.Edits
  neighbour_sets: dict  # edit name -> Neighbours (the pixel baseline uses the same ones)
  bank_data: sources.Bank
  network: object  # runs.kit.Network
  bank_images: object = None  # the bank's images already read once (`common.ReadOnce`), or None


def write_outputs(config, workdir: Path, run: Results, timings: dict, t_start: float) -> dict:
  """The edit run's outputs: originals, pixel baselines, grid.png, index.html, metrics.json
  (with the probe's and the judge's scores); returns the metrics record."""
  tests, items, edits = run.tests, run.items, run.edits
  attributes = list(dict.fromkeys(a for _, a in items))
  save_originals(workdir, tests)
  baselines = save_baselines(config, workdir, run)
  per_image, files, failures = score_edits(config, tests, items, edits, baselines)
  probe_accuracy = None
  if config.probe and per_image:
    probe_accuracy = add_probe_scores(config, per_image, tests, items, edits.images,
                                      edits.finite, run.bank_data)
  judge_record = None
  if config.get("judge", "") and per_image:
    judge_record = add_judge_scores(config, per_image, tests, items, edits.images, edits.finite,
                                    baselines)
  summary = {output_names.delta_tag(delta): metrics_lib.summarise(
      [r for r in per_image if r["delta"] == float(delta)], attributes)
      for delta in config.deltas}
  save_grid(config, workdir, tests, items, edits)
  zones = photo_outputs.zone_metrics(config, tests, items, edits.images, edits.finite)
  timings["total_s"] = time.perf_counter() - t_start
  record = run_record.run_record(
      config, run.network, timings=timings,
      data="photos" if tests.originals is not None else config.data,
      images=tests.names,
      summary=summary,
      probe=dict(representation=config.probe, accuracy_on_held_out=probe_accuracy),
      judge=judge_record,
      per_image=per_image,
      photo_zones=zones,
      failures=failures,
      outputs=dict(grid="grid.png", edits=sorted(files.values()), index="index.html",
                   originals=[f"originals/{n}.png" for n in tests.names],
                   baselines=dict(pixel=sorted(output_names.output_name(tests.names[i], a, "pixel",
                                                                        "baselines")
                                               for i, a in items)),
                   **photo_outputs.output_files(config, tests, attributes)))
  record["settings"]["attributes"] = list(attributes)
  write_index(workdir, config, run, files, summary, failures, photo_outputs.zone_section(zones))
  files_lib.atomic_write_json(workdir / "metrics.json", files_lib.jsonable(record))
  return record


def save_originals(workdir: Path, tests: sources.TestImages) -> None:
  """`originals/<image>.png`: each input (own photos: at their own size)."""
  files_lib.make_folder(workdir / "originals")
  for i, name in enumerate(tests.names):
    original = tests.originals[i] if tests.originals is not None else tests.images[i]
    image_io.save_png(workdir / "originals" / f"{name}.png", original)


def save_baselines(config, workdir: Path, run: Results) -> dict:
  """The pixel-space baseline of each item, with the δ that best matches the counterfactual
  when there is one: `(test image, attribute) -> ([S, S, 3] baseline, r, δ)`; each saved as
  `baselines/<image>__<attribute>__pixel.png`."""
  tests, neighbour_sets = run.tests, run.neighbour_sets
  bank_images = run.bank_images or common.ReadOnce(run.bank_data.images)
  files_lib.make_folder(workdir / "baselines")
  baselines = {}
  for i, a in run.items:
    x = tests.images[i]
    best_r, best_d = float("nan"), config.pixel_delta_photos
    if tests.counterfactuals is not None:
      cf, m = tests.counterfactuals[a][i], tests.masks[a][i]
      best_r, best_d = min((metrics_lib.counterfactual_ratio(
          pixel_baseline(x, bank_images, neighbour_sets, i, a, d), x, cf, m), d)
          for d in config.pixel_deltas)
    baseline = pixel_baseline(x, bank_images, neighbour_sets, i, a, best_d)
    baselines[(i, a)] = (baseline, best_r, best_d)
    image_io.save_png(workdir / output_names.output_name(tests.names[i], a, "pixel", "baselines"),
                      photo_result(tests, i, baseline))
  return baselines


def score_edits(config, tests: sources.TestImages, items, edits: pipeline.Edits,
                baselines: dict) -> tuple[list[dict], dict, list[str]]:
  """`(per_image, files, failures)`: on generated faces each finished edit's scores against its
  counterfactual (and its baseline's); `(s, j) -> its PNG`; a line per failed edit."""
  results, losses, finite, evaluations = edits
  failures, per_image, files = [], [], {}
  for s, delta in enumerate(config.deltas):
    for j, (i, a) in enumerate(items):
      if not finite[s, j]:
        failures.append(f"{tests.names[i]} / {a} / δ={delta:g}: loss became non-finite; "
                        "no image written")
        continue
      files[(s, j)] = edit_file(tests, (i, a), delta)
      if tests.counterfactuals is not None:
        x, cf, m = tests.images[i], tests.counterfactuals[a][i], tests.masks[a][i]
        baseline, best_r, best_d = baselines[(i, a)]
        per_image.append(dict(
            image=tests.names[i], attribute=a, delta=float(delta),
            r=metrics_lib.counterfactual_ratio(results[s, j], x, cf, m),
            outside=metrics_lib.outside_change(results[s, j], x, m),
            baseline_r=best_r, baseline_outside=metrics_lib.outside_change(baseline, x, m),
            baseline_delta=best_d, loss=float(losses[s, j]),
            evaluations=int(evaluations[s, j])))
  return per_image, files, failures


def save_grid(config, workdir: Path, tests: sources.TestImages, items,
              edits: pipeline.Edits) -> None:
  """`grid.png`: per test image, the input | its edits for each δ | the counterfactuals."""
  attributes = list(dict.fromkeys(a for _, a in items))
  col_labels = ["input"] + [f"{a} δ={d:g}" for d in config.deltas for a in attributes]
  if tests.counterfactuals is not None:
    col_labels += [f"true {a}" for a in attributes]
  blank = np.ones_like(tests.images[0])
  grid_rows = []
  for i in range(len(tests.names)):
    row = [tests.images[i]]
    for s in range(len(config.deltas)):
      for a in attributes:
        j = items.index((i, a))
        row.append(edits.images[s, j] if edits.finite[s, j] else blank)
    if tests.counterfactuals is not None:
      row += [tests.counterfactuals[a][i] for a in attributes]
    grid_rows.append(row)
  figures.save_grid(workdir / "grid.png", grid_rows, row_labels=tests.names,
                    col_labels=col_labels, min_tile=figures.MIN_TILE)


def add_judge_scores(config, per_image, tests, items, results, finite, baselines) -> dict:
  """Adds the attribute judge's verdicts to each synthetic row (in place); returns the judge's
  file, its recorded held-out accuracy and its accuracy on this run's inputs and counterfactuals.

  Per row: `judge_success` (1.0 when the judge sees the added attribute on the edit),
  `judge_probability`, `judge_preservation` (fraction of the other attributes whose judged label
  is unchanged), the same for the pixel baseline, `judge_prefers_dfi`: the judge-scored
  two-alternative choice between the DFI edit and the pixel baseline (`judge.choice`), and
  `judge_prefers_truth`: the same choice between the true counterfactual and the baseline, the
  generator's own edit's score (where it is low, the judge prefers the baseline to the truth).
  """
  path = judge_lib.path_for(config.judge)
  try:
    sha256 = run_state.file_sha256(path)  # hashed before, checked after: the bytes it read
    params, provenance = judge_lib.load(path)
    run_state.check_unchanged([path], [sha256], "--config.judge")
  except (judge_lib.JudgeError, OSError) as e:
    raise run_state.RunError(f"--config.judge={config.judge}: {e}") from None
  done = [(s, j) for s in range(len(config.deltas)) for j in range(len(items)) if finite[s, j]]
  inputs = tests.images[[items[j][0] for _, j in done]]
  added = [items[j][1] for _, j in done]
  dfi = judge_lib.score_edits(params, inputs, np.stack([results[s, j] for s, j in done]), added)
  pixel = judge_lib.score_edits(params, inputs, np.stack([baselines[items[j]][0]
                                                          for _, j in done]), added)
  true = judge_lib.score_edits(params, inputs, np.stack(
      [tests.counterfactuals[items[j][1]][items[j][0]] for _, j in done]), added)
  for row, d, p, t in zip(per_image, dfi, pixel, true):  # rows are in `done` order
    row.update(judge_success=float(d["success"]), judge_probability=d["probability"],
               judge_preservation=d["preservation"], judge_changed=",".join(d["changed"]),
               baseline_judge_success=float(p["success"]),
               baseline_judge_probability=p["probability"],
               baseline_judge_preservation=p["preservation"],
               judge_prefers_dfi=judge_lib.choice(d, p), judge_prefers_truth=judge_lib.choice(t, p))
  truth = judge_lib.predict(params, tests.images) > 0.5
  accuracy = {}
  for a in sorted({a for _, a in items}):
    col = list(judge_lib.ATTRIBUTES).index(a)
    on_cf = judge_lib.predict(params, tests.counterfactuals[a])[:, col] > 0.5
    accuracy[a] = float(np.mean(np.concatenate([truth[:, col] == tests.attributes[:, col],
                                                on_cf != tests.attributes[:, col]])))
  return dict(path=str(path), sha256=sha256,
              description=provenance.get("description", ""),
              held_out_accuracy=(provenance.get("held_out") or {}).get("accuracy"),
              accuracy_on_this_run=accuracy)


def bank_pixel_features(config, bank_data: sources.Bank) -> np.ndarray:
  """The probe's `[N, 768]` pixel features of every bank image; for generated faces read from
  the bank cache (rendering 10,000 faces takes ~50 s)."""
  compute = lambda: dict(  # noqa: E731
      features=probe_lib.pixel_features(bank_data.images).astype(np.float32))
  if config.data != "synthetic":
    return compute()["features"]
  return bank_cache.cached("probe_pixels", compute, **sources.synthetic_key(config))["features"]


def add_probe_scores(config, per_image, tests, items, results, finite, bank_data) -> dict:
  """Adds the attribute probe's success and preservation to each synthetic row (in place);
  returns the probe's accuracy on the held-out originals and counterfactuals."""
  probe = probe_lib.fit(bank_pixel_features(config, bank_data), bank_data.attributes,
                        config.probe)
  names = list(bank_data.attribute_names)
  before = probe_lib.predict(probe, probe_lib.pixel_features(tests.images))
  rows = iter(per_image)
  accuracy = {}
  for s in range(len(config.deltas)):
    for j, (i, a) in enumerate(items):
      if not finite[s, j]:
        continue
      row = next(rows)
      after = probe_lib.predict(probe, probe_lib.pixel_features(results[s, j][None]))[0]
      row["probe_success"], row["probe_preservation"] = probe_lib.edit_scores(
          before[i], after, names.index(a))
  for a in {a for _, a in items}:
    col = names.index(a)
    cf = probe_lib.predict(probe, probe_lib.pixel_features(tests.counterfactuals[a]))[:, col]
    truth = tests.attributes[:, col]
    accuracy[a] = float(np.mean(np.concatenate([before[:, col] == truth, cf == ~truth])))
  return accuracy


# index.html's quality table: each column and what it measures.
COLUMNS = {
    "attribute": "the attribute added",
    "judge success": "share of edits in which the independent attribute judge sees the added "
                     "attribute",
    "judge preservation": "share of the other five attributes the judge sees unchanged",
    "DFI r (in region)": "how far the edit moved the pixels inside the attribute's region "
                         "towards the true counterfactual (1 = all the way, 0 = not at all)",
    "DFI change outside": "mean absolute change outside the attribute's region (lower is "
                          "better)",
    "pixel: judge success / preservation": "the same two judge scores for the pixel-space "
                                           "baseline (mean target − mean source pixels)",
    "pixel r": "the baseline's r, at its best pixel δ",
    "pixel change outside": "the baseline's change outside the region",
    "judge prefers DFI : pixel": "the judge's two-alternative choice between DFI and the "
                                 "baseline, as wins DFI : baseline",
    "judge prefers truth : pixel": "the same choice between the true counterfactual and the "
                                   "baseline: what the generator's own edit would score",
    "probe success": "a linear probe on 16² pixels sees the added attribute",
    "probe preservation": "share of the other attributes the probe sees unchanged",
}
INPUT_WIDTH = 192  # px on the page for a 64² input or edit (3×)
PHOTO_WIDTH = 360  # px on the page for a full-size photo


def already_has(tests: sources.TestImages, attribute_names, attribute: str) -> list[str]:
  """The test images whose (judged) labels say they already have `attribute` (own photos:
  the judge's verdict), for a one-line note; none without labels or for a combined edit."""
  if tests.attributes is None or tests.counterfactuals is not None:
    return []
  names = list(attribute_names or [])
  return [tests.names[i] for i in range(len(tests.names))
          if all(p in names and tests.attributes[i][names.index(p)] for p in attribute.split("+"))]


def write_index(workdir: Path, config, run: Results, files: dict, summary: dict,
                failures: Sequence[str], extra: Sequence[dict] = ()) -> None:
  """`index.html`: the settings and grid, a quality table per δ (generated faces), each
  attribute's edits (`files`: `(s, j)` -> PNG), the photo sections, `extra`, the failures."""
  tests, items, attribute_names = run.tests, run.items, run.bank_data.attribute_names
  attributes = list(dict.fromkeys(a for _, a in items))
  prov = run.network.provenance
  sections = [dict(
      heading="Settings",
      text=(f"Weights: {prov['description']} (kind {prov['kind']}, width {prov['width']}, "
            f"{prov['preprocessing']} preprocessing, {prov['pooling']} pooling). "
            f"{prov.get('quality', '')} K={config.k}, scaling {config.scaling}, "
            f"δ={list(config.deltas)}, λ={config.tv_weight}, β={config.tv_beta}, "
            f"{config.iterations} iterations ({config.solver})."),
      figures=[dict(src="grid.png", caption="rows: test images; columns: input, edits, "
                    "and on synthetic data the true counterfactuals")])]
  tags = {output_names.delta_tag(d): d for d in config.deltas}
  for tag, per_attr in summary.items():
    if per_attr:
      sections.append(dict(
          heading=f"Quality at δ = {tags.get(tag, tag)} (counterfactual benchmark)",
          text="Scores over the held-out generated faces, whose true counterfactual (the same "
               "face with the attribute) is known. Columns:",
          table=dict(
              columns=list(COLUMNS),
              rows=[[a, _pct(v.get("judge_success")), _pct(v.get("judge_preservation")),
                     f"{v['r']:.3f}", f"{v['outside']:.4f}",
                     f"{_pct(v.get('baseline_judge_success'))} / "
                     f"{_pct(v.get('baseline_judge_preservation'))}",
                     f"{v['baseline_r']:.3f}", f"{v['baseline_outside']:.4f}",
                     preference_ratio(v.get("judge_prefers_dfi")),
                     preference_ratio(v.get("judge_prefers_truth")),
                     _pct(v.get("probe_success")), _pct(v.get("probe_preservation"))]
                    for a, v in per_attr.items()],
              explained=COLUMNS)))
  photo_rows = photo_outputs.closeup_rows(config, tests, attributes) if tests.faces else {}
  for a in attributes:
    section = dict(heading=f"Edit: {a}", rows=[])
    has = already_has(tests, attribute_names, a)
    if has:
      section["notes"] = [f"The judge says {', '.join(has)} already "
                          f"{'has' if len(has) == 1 else 'have'} {a}: adding it changes little."]
    if tests.faces is not None:  # own photos: the face close up, then each full photo once
      section["rows"] = photo_rows[a]
    for i, name in enumerate(tests.names if tests.faces is None else []):
      width = INPUT_WIDTH if tests.originals is None else PHOTO_WIDTH
      row = [dict(src=f"originals/{name}.png", caption=f"{name}: input", width=width)]
      row += [dict(src=files[(s, j)], caption=f"{a}, δ = {d:g}", width=width)
              for s, d in enumerate(config.deltas) for j, (k, b) in enumerate(items)
              if k == i and b == a and (s, j) in files]
      section["rows"].append(row)
    sections.append(section)
  sections += photo_outputs.index_sections(config, tests, attributes) + list(extra)
  if failures:
    sections.append(dict(heading="Failures", text="; ".join(failures)))
  figures.write_index_html(workdir / "index.html", "DFI edits", sections)


def _pct(value) -> str:
  return "–" if value is None else f"{100 * value:.0f} %"


def preference_ratio(fraction) -> str:
  """`fraction` of choices won by DFI as a ratio DFI : baseline ("3.0 : 1", "all : 0")."""
  if fraction is None:
    return "–"
  if fraction >= 1.0:
    return "all : 0"
  return f"{fraction / (1 - fraction):.2f} : 1"
