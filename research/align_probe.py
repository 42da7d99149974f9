"""Does aligning the neighbours onto the test face make DFI's edits work? (issue 9)

  python -m research.align_probe --out=runs/align [--arms=none,similarity,affine,geometry,
      paired_geometry] [--deltas=1,2,3] [--solver=pipeline|scipy] [--w_only]
      [--config=experiments/configs/synthetic.py:eval] [--config.num_test=8]
  python -m research.align_probe --picture=docs/features/align_neighbours_d3.png
      --out=runs/align4s,runs/align4p --arms=none,similarity,geometry,paired_geometry
      --picture_faces=0,1 --picture_delta=3

One bank, test set, φ-space neighbour selection and reverse map (the pipeline's
`reconstruct.ReverseMap` with the config's solver settings, or with --solver=scipy SciPy's
L-BFGS-B on the joint problem as `research.dfi_probe`; each further δ warm-started from the
previous result, as `experiments.transform`), and five ways to make w from the same neighbours:

  none        w = mean φ(targets) − mean φ(sources), as the pipeline (`align_neighbours=False`)
  similarity  each neighbour warped onto the test face by a similarity fit of the 12 landmarks
              (`align.aligned_vectors`; what `align_neighbours=True` does)
  affine      the same with an affine fit
  geometry    upper bound: each neighbour re-rendered with the test face's geometry
              (`align.same_geometry`: placement, face shape, feature sizes and positions)
  paired_geometry  upper bound without neighbour noise too: each source neighbour in the test
              face's geometry, with and without the attribute (w = mean of those differences)

For each arm, attribute and δ: r inside the region and mean |change| outside (metrics.py), and
two pixel-space baselines x + d·(mean target − mean source pixels) with the best d of the
config's `pixel_deltas` per image: from the unaligned neighbours (the pipeline's) and from the
arm's own aligned/re-rendered neighbours. Also, per arm, how far w is from the true
counterfactual's w* = φ(x_cf) − φ(x): ‖w − w*‖ / ‖w*‖ (overall and per tap) and cos(w, w*).
Writes `OUT/records.jsonl`, `OUT/table.md` and `OUT/<arm>.npz` (inputs, counterfactuals, edits)
for pictures; with --w_only, only the w diagnostics and pixel baselines (`OUT/w_records.jsonl`).
"""

from __future__ import annotations

import dataclasses

import json
import os
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SciPy's BLAS threads would steal XLA's

import jax.numpy as jnp
import numpy as np
from absl import flags

from dfi_jax.dfi import align
from dfi_jax.runs import kit
from dfi_jax.base import run_state
from dfi_jax.data import faces
from dfi_jax.dfi import features as features_lib
from dfi_jax.outputs import figures
from dfi_jax.base import files as files_lib
from dfi_jax.dfi import attribute_vector
from dfi_jax.eval import metrics as metrics_lib
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.dfi import pipeline
from dfi_jax.dfi import reconstruct
from dfi_jax.data import banks
from dfi_jax.data import sources
from experiments import cli
from research import scipy_reference

_CONFIG = cli.define_config_file(
    "experiments/configs/synthetic.py:eval", "Config file (FILE or FILE:variant).")
_OUT = flags.DEFINE_string("out", "runs/align", "Output folder.")
_ARMS = flags.DEFINE_list("arms", ["none", "similarity", "affine", "geometry"],
                          "Ways to make w: none, similarity, affine, geometry.")
_DELTAS = flags.DEFINE_list("deltas", ["1", "2", "3"], "δ sweep (warm-started), replaces "
                            "the config's deltas.")
_SOLVER = flags.DEFINE_enum(
    "solver", "pipeline", ["pipeline", "scipy"], "pipeline: reconstruct.ReverseMap with the "
    "config's solver settings; scipy: SciPy's L-BFGS-B on the joint problem of all items, one "
    "evaluation per iteration (the official solver, and research.dfi_probe's), ~4x faster "
    "here than the pipeline's backtracking line search.")
_PICTURE = flags.DEFINE_string(
    "picture", "", "Only draw a picture from earlier runs' OUT/<arm>.npz (comma-separated "
    "OUT folders are searched in order): rows = (face, arm) for --picture_faces, columns = "
    "input and the six edits at --picture_delta, then the true counterfactuals.")
_PICTURE_FACES = flags.DEFINE_list("picture_faces", ["0", "1"], "Test-face indices to draw.")
_PICTURE_DELTA = flags.DEFINE_float("picture_delta", 1.0, "δ of the edits drawn.")
_W_ONLY = flags.DEFINE_bool("w_only", False, "Only the feature-space diagnostics of w (no "
                            "reverse maps): minutes instead of tens of minutes.")

ARMS = ("none", "similarity", "affine", "geometry", "paired_geometry")


def paired_geometry_vectors(phi, params, bank_params, test_params, size, neighbour_sets,
                            names, batch_size):
  """Upper bound without neighbour noise: for each source neighbour p (lacking a), φ(p with a)
  − φ(p), both re-rendered in the test face's geometry, averaged over the K sources."""
  n = len(bank_params)

  def images_for(b, used):
    out = []
    for u in used:
      e, rest = divmod(int(u), 2 * n)
      on, j = divmod(rest, n)
      p = align.same_geometry(bank_params[j], test_params[b])
      if on:
        p = faces.with_attributes(p, **{names[e]: True})
      out.append(faces.render(p, size).image)
    return np.stack(out)

  sets = [neighbours_lib.Neighbours(np.asarray(nb.source) + 2 * n * e,
                                    np.asarray(nb.source) + 2 * n * e + n)
          for e, nb in enumerate(neighbour_sets)]
  return align.neighbour_vectors(phi, params, images_for, len(test_params), sets, batch_size)


def geometry_vectors(phi, params, bank_params, test_params, size, neighbour_sets, batch_size):
  """`align.neighbour_vectors` with neighbours re-rendered in each test face's geometry."""
  def images_for(b, used):
    return np.stack([faces.render(align.same_geometry(bank_params[j], test_params[b]),
                                  size).image for j in used])
  return align.neighbour_vectors(phi, params, images_for, len(test_params), neighbour_sets,
                                 batch_size)


def w_diagnostics(w, oracle, spec, items, names, test_names):
  """Per item: ‖w − w*‖ / ‖w*‖ (0 = the true counterfactual's φ difference w*, 1 = no better
  than w = 0), overall and per tap, and cos(w, w*)."""
  bounds = np.cumsum((0,) + spec.sizes)
  rows = []
  for j, (i, e) in enumerate(items):
    wo = oracle[e, i].astype(np.float64)
    v = w[j].astype(np.float64)
    row = dict(attribute=names[e], image=test_names[i],
               w_err=float(np.linalg.norm(v - wo) / np.linalg.norm(wo)),
               w_cos=float(v @ wo / (np.linalg.norm(v) * np.linalg.norm(wo) + 1e-30)))
    for t, tap in enumerate(spec.taps):
      sl = slice(bounds[t], bounds[t + 1])
      row[f"w_err_{tap}"] = float(np.linalg.norm(v[sl] - wo[sl]) / np.linalg.norm(wo[sl]))
    rows.append(row)
  return rows


def best_pixel(x, direction, cf, mask, deltas):
  """(r, outside, d) of the best-d pixel edit x + d·direction."""
  cands = []
  for d in deltas:
    e = np.clip(x + d * direction, 0.0, 1.0)
    cands.append((metrics_lib.counterfactual_ratio(e, x, cf, mask),
                  metrics_lib.outside_change(e, x, mask), d))
  return min(cands)


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  if _PICTURE.value:
    return picture(Path(_PICTURE.value), [Path(o) for o in _OUT.value.split(",")], _ARMS.value,
                   [int(i) for i in _PICTURE_FACES.value], _PICTURE_DELTA.value)
  config = run_state.split_lists(_CONFIG.value)
  kit.validate(config)
  deltas = [float(d) for d in _DELTAS.value]
  bad = [a for a in _ARMS.value if a not in ARMS]
  if bad:
    raise ValueError(f"--arms: unknown {bad}; expected among {ARMS}")
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  size = config.image_size
  t0 = time.perf_counter()
  network = kit.load_network(config)
  # The SciPy reference solves the paper's objective over pixels: no where mask, per-pixel chroma.
  rm_config = dataclasses.replace(kit.reverse_map_config(config), chroma_scale=1,
                                  where=reconstruct.ReverseMapConfig().where)
  pipe = pipeline.make(network.net, network.params, size, rm_config)
  phi, spec = pipe.phi, pipe.spec
  bank_data = banks.load_bank(config)
  edits = kit.select_edits(bank_data, config.attributes)
  tests = sources.load_tests(config, bank_data, edits)
  test_params = sources.test_face_params(config)
  bank_params = [faces.sample_face(s) for s in range(config.bank_seed,
                                                     config.bank_seed + config.bank_size)]
  bank = features_lib.compute_features(phi, network.params, bank_data.images,
                                       config.feature_batch)
  phi_x = jnp.asarray(features_lib.compute_features(phi, network.params, tests.images,
                                                    config.feature_batch))
  neighbour_sets = []
  for e in edits:
    masks = neighbours_lib.candidate_masks(bank_data.attributes, e, bank_data.attribute_names)
    if config.neighbours == "attributes":
      nb = neighbours_lib.nearest(bank_data.attributes, tests.attributes, masks, config.k,
                                  metric="hamming")
    else:
      nb = neighbours_lib.nearest(bank, phi_x, masks, config.k)
    neighbour_sets.append(nb)
  # The oracle w = φ(x_cf) − φ(x): what a perfect attribute vector would be (scaling none).
  oracle = np.stack([features_lib.compute_features(
      phi, network.params, tests.counterfactuals[e.name], config.feature_batch)
      - np.asarray(phi_x) for e in edits])  # [E, B, D]
  setup_s = time.perf_counter() - t0
  print(f"setup {setup_s:.0f} s ({len(tests.names)} faces, bank {len(bank)})", flush=True)

  solve = (None if _SOLVER.value == "pipeline" else
           scipy_reference.joint_solve(network.net, spec, rm_config, network.params))
  names = [e.name for e in edits]
  items = [(i, a) for a in range(len(edits)) for i in range(len(tests.names))]
  unaligned_pixels = [np.stack([
      bank_data.images[np.asarray(nb.target[i])].mean(0)
      - bank_data.images[np.asarray(nb.source[i])].mean(0) for i in range(len(tests.names))])
      for nb in neighbour_sets]
  records, table = [], []
  for arm in _ARMS.value:
    t_arm = time.perf_counter()
    if arm == "none":
      vec = align.AlignedVectors(
          [np.asarray(attribute_vector.from_bank(jnp.asarray(bank), nb))
           for nb in neighbour_sets], unaligned_pixels)
    elif arm == "paired_geometry":
      vec = paired_geometry_vectors(phi, network.params, bank_params, test_params, size,
                                    neighbour_sets, names, config.feature_batch)
    elif arm == "geometry":
      vec = geometry_vectors(phi, network.params, bank_params, test_params, size,
                             neighbour_sets, config.feature_batch)
    else:
      vec = align.aligned_vectors(
          phi, network.params, align.Landmarked(bank_data.images,
                                                align.landmarks(bank_params, size)),
          align.landmarks(test_params, size), neighbour_sets, arm, config.feature_batch)
    w_s = time.perf_counter() - t_arm
    w = jnp.concatenate([attribute_vector.scale_vector(jnp.asarray(v), config.scaling)
                         for v in vec.w])  # [items, D], edit-major like `items`
    w_rows = w_diagnostics(np.asarray(w), oracle, spec, items, names, tests.names)
    for row, (i, e) in zip(w_rows, items):
      x, cf, m = tests.images[i], tests.counterfactuals[names[e]][i], tests.masks[names[e]][i]
      row["pixel_r"], row["pixel_outside"], _ = best_pixel(x, unaligned_pixels[e][i], cf, m,
                                                           config.pixel_deltas)
      row["arm_pixel_r"], row["arm_pixel_outside"], _ = best_pixel(x, vec.pixels[e][i], cf, m,
                                                                   config.pixel_deltas)
    wsum = metrics_lib.summarise(w_rows, names)
    print(f"{arm:10s} w: " + " | ".join(
        f"{a[:6]} err {v['w_err']:.2f} cos {v['w_cos']:.2f} ({v['w_err_conv1_2']:.2f})"
        if "w_err_conv1_2" in v else f"{a[:6]} err {v['w_err']:.2f} cos {v['w_cos']:.2f}"
        for a, v in wsum.items()) + f"   ({w_s:.0f} s)", flush=True)
    print(f"{arm:10s} pixel r (own neighbours): " + " | ".join(
        f"{a[:6]} {v['arm_pixel_r']:.2f}/{v['arm_pixel_outside']:.3f}" for a, v in wsum.items()),
        flush=True)
    if _W_ONLY.value:
      rec = dict(arm=arm, delta=None, num_test=len(tests.names), k=config.k,
                 taps=list(config.taps), w_s=w_s, w_summary=wsum, w_rows=w_rows)
      with open(out / "w_records.jsonl", "a") as f:
        f.write(json.dumps(files_lib.jsonable(rec)) + "\n")
      continue
    edited = pipeline.edit(
        pipe, tests.images, lambda _, vec=vec: vec.w, deltas, pipeline.iterations_for(
            deltas, config.iterations, config.next_iterations),
        scaling=config.scaling, batch_size=config.batch_size, phi_x=phi_x, solve=solve)
    results, rm_s = edited.edits.images, edited.seconds["reverse_map_s"]
    for s, delta in enumerate(deltas):
      rows = []
      for j, (i, e) in enumerate(items):
        a = names[e]
        x, cf, m = tests.images[i], tests.counterfactuals[a][i], tests.masks[a][i]
        pr, po, _ = best_pixel(x, unaligned_pixels[e][i], cf, m, config.pixel_deltas)
        ar, ao, _ = best_pixel(x, vec.pixels[e][i], cf, m, config.pixel_deltas)
        rows.append(dict(attribute=a, image=tests.names[i],
                         r=metrics_lib.counterfactual_ratio(results[s, j], x, cf, m),
                         outside=metrics_lib.outside_change(results[s, j], x, m),
                         pixel_r=pr, pixel_outside=po, arm_pixel_r=ar, arm_pixel_outside=ao))
      summ = metrics_lib.summarise(rows, names)
      rec = dict(arm=arm, delta=delta, num_test=len(tests.names), k=config.k,
                 taps=list(config.taps), neighbours=config.neighbours,
                 iterations=[config.iterations, config.next_iterations], w_s=w_s, reverse_map_s=rm_s,
                 summary=summ, per_image=rows)
      records.append(rec)
      line = (f"{arm:10s} δ={delta:g}: " + " | ".join(
          f"{a[:6]} {v['r']:.2f}/{v['outside']:.3f}" for a, v in summ.items())
          + f"  [mean r {np.mean([v['r'] for v in summ.values()]):.2f}]")
      print(line, flush=True)
      table.append((arm, delta, summ))
    print(f"{arm:10s} pixel (own neighbours): " + " | ".join(
        f"{a[:6]} {v['arm_pixel_r']:.2f}/{v['arm_pixel_outside']:.3f}" for a, v in summ.items())
        + f"   (w {w_s:.0f} s, reverse maps {rm_s:.0f} s)", flush=True)
    np.savez_compressed(out / f"{arm}.npz", inputs=tests.images.astype(np.float16),
                        edits=results.astype(np.float16), deltas=np.asarray(deltas),
                        items=np.asarray(items), attributes=np.asarray(names),
                        counterfactuals=np.stack([tests.counterfactuals[a] for a in names]
                                                 ).astype(np.float16))
    with open(out / "records.jsonl", "a") as f:
      for r in records[-len(deltas):]:
        f.write(json.dumps(files_lib.jsonable(r)) + "\n")
    write_table(out / "table.md", table, names, len(tests.names))


def picture(path: Path, outs: Sequence[Path], arms: Sequence[str], face_ids: Sequence[int],
            delta: float) -> None:
  """Rows (face, arm): input, the edit of each attribute at `delta`; last row per face: true."""
  data = {}
  for arm in arms:
    found = [o / f"{arm}.npz" for o in outs if (o / f"{arm}.npz").exists()]
    if not found:
      raise ValueError(f"no {arm}.npz in {[str(o) for o in outs]}")
    data[arm] = np.load(found[0])
  first = data[arms[0]]
  names = [str(a) for a in first["attributes"]]
  rows, labels = [], []
  for f in face_ids:
    for arm in arms:
      z = data[arm]
      s = int(np.argmin(np.abs(z["deltas"] - delta)))
      items = [tuple(it) for it in z["items"]]
      rows.append([z["inputs"][f].astype(np.float32)] + [
          z["edits"][s, items.index((f, e))].astype(np.float32) for e in range(len(names))])
      labels.append(f"face {f}: {arm}")
    rows.append([first["inputs"][f].astype(np.float32)] + [
        first["counterfactuals"][e, f].astype(np.float32) for e in range(len(names))])
    labels.append(f"face {f}: true")
  path.parent.mkdir(parents=True, exist_ok=True)
  figures.save_grid(path, rows, row_labels=labels, col_labels=["input"] + names)


def write_table(path: Path, table, names, num_test: int) -> None:
  head = ("| arm | δ | " + " | ".join(names) + " | mean r |\n"
          + "|---" * (len(names) + 3) + "|\n")
  lines = [f"Cells: r inside / mean |change| outside, {num_test} held-out faces.\n", head]
  pixel_done = set()
  for arm, delta, summ in table:
    lines.append(f"| {arm} | {delta:g} | " + " | ".join(
        f"{summ[a]['r']:.2f} / {summ[a]['outside']:.3f}" for a in names)
        + f" | {np.mean([summ[a]['r'] for a in names]):.2f} |\n")
  for arm, delta, summ in table:
    if arm in pixel_done:
      continue
    pixel_done.add(arm)
    key = "pixel" if arm == "none" else "arm_pixel"
    lines.append(f"| pixel baseline ({arm} neighbours) | best | " + " | ".join(
        f"{summ[a][key + '_r']:.2f} / {summ[a][key + '_outside']:.3f}" for a in names)
        + f" | {np.mean([summ[a][key + '_r'] for a in names]):.2f} |\n")
  path.write_text("".join(lines))


if __name__ == "__main__":
  cli.run_main(main)
