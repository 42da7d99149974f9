"""Fast probe of DFI edit quality for feature-research sweeps (not the shipped pipeline).

  python -m research.dfi_probe --weights=FILE [--taps=conv3_1,conv4_1] [--tv=0.001,0.01]
      [--scaling=none] [--deltas=0.5,1,1.5,2] [--neighbours=attributes] [--k=100]
      [--num_test=2] [--iterations=100] [--out=runs/fr/probe]

Same bank, held-out test faces, neighbours, attribute vector, loss (reconstruct.make_objective)
and counterfactual metrics as `experiments.transform`, but the reverse map is SciPy's L-BFGS-B
(the official solver) on the joint problem of all (image, attribute) items with one jitted
value-and-grad per iteration, and the bank is rendered once per process. On this 2-core
machine that is several times faster than the pipeline's vmapped jaxopt solver, which is what
makes sweeps over δ, λ, taps and neighbour rules affordable. Winners are confirmed with the
real `experiments.transform`.

Prints one line per (λ, scaling, neighbours, δ) with r inside / change outside per attribute
and the best-δ pixel baseline's, and writes a grid per setting under --out.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import NamedTuple, Sequence

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from dfi_jax.data import faces
from dfi_jax.dfi import features as features_lib
from dfi_jax.outputs import figures
from dfi_jax.dfi import attribute_vector
from dfi_jax.eval import metrics as metrics_lib
from dfi_jax.dfi import neighbours as neighbours_lib
from dfi_jax.nets import pretrained
from dfi_jax.dfi import pipeline
from dfi_jax.dfi import reconstruct
from dfi_jax.nets import weights as weights_lib
from experiments import cli
from research import scipy_reference

_WEIGHTS = flags.DEFINE_string("weights", "", "Weights: '' = ImageNet VGG16, 'random', or a file.")
_TAPS = flags.DEFINE_list("taps", ["conv3_1", "conv4_1", "conv5_1"], "Taps.")
_SIZE = flags.DEFINE_integer("image_size", 64, "Image side.")
_BANK = flags.DEFINE_integer("bank_size", 800, "Bank faces.")
_NUM_TEST = flags.DEFINE_integer("num_test", 2, "Held-out test faces.")
_K = flags.DEFINE_integer("k", 100, "Neighbours per set.")
_NEIGHBOURS = flags.DEFINE_list("neighbours", ["attributes"], "attributes and/or features.")
_SCALING = flags.DEFINE_list("scaling", ["none"], "mean_square / none / unit (swept).")
_DELTAS = flags.DEFINE_list("deltas", ["0.5", "1", "1.5", "2"], "δ sweep (warm-started).")
_TV = flags.DEFINE_list("tv", ["0.001"], "λ values (0-255 units), swept.")
_BETA = flags.DEFINE_float("beta", 2.0, "TV β.")
_ITERS = flags.DEFINE_integer("iterations", 100, "L-BFGS-B iterations for the first δ.")
_NEXT = flags.DEFINE_integer("next_iterations", 0, "…for each further δ (0 = same).")
_ATTRS = flags.DEFINE_list("attributes", list(faces.ATTRIBUTES), "Attributes.")
_OUT = flags.DEFINE_string("out", "runs/fr/probe", "Output folder.")
_TAG = flags.DEFINE_string("tag", "", "Name prefix of this probe's outputs.")
_W_MODE = flags.DEFINE_string(
    "w_mode", "neighbours", "neighbours: the pipeline's w; oracle: w = φ(x_cf) − φ(x) (a "
    "diagnostic: can the features + reverse map reach the counterfactual at all?); paired: w = "
    "mean over --paired other identities of φ(face with a) − φ(same face without a).")
_PAIRED = flags.DEFINE_integer("paired", 32, "Identities for --w_mode=paired.")

PIXEL_DELTAS = (0.25, 0.5, 0.75, 1.0)
TEST_SEED = 10_000_000


def bank_cache(size: int, n: int):
  path = Path("runs/fr/cache") / f"bank_{size}_{n}.npz"
  if path.exists():
    z = np.load(path)
    return z["images"], z["attributes"]
  images, attributes = faces.generate(range(n), size)
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(path, images=images, attributes=attributes)
  return images, attributes


def tests(size: int, n: int, attributes):
  chosen, seed = [], TEST_SEED
  while len(chosen) < n:
    p = faces.sample_face(seed)
    if not any(p.attributes):
      chosen.append(p)
    seed += 1
  rendered = [faces.render(p, size) for p in chosen]
  x = np.stack([r.image for r in rendered])
  cfs = {a: np.stack([faces.counterfactual(p, a, size).image for p in chosen])
         for a in attributes}
  masks = {a: np.stack([r.masks[a] for r in rendered]) for a in attributes}
  attrs = np.stack([np.asarray(p.attributes, bool) for p in chosen])
  return [f"face{p.seed}" for p in chosen], x, attrs, cfs, masks


def paired_vector(phi, params, attribute: str, size: int, n: int) -> jax.Array:
  """Mean of φ(face with `attribute`) − φ(same face without) over `n` bank-range identities."""
  col = faces.ATTRIBUTES.index(attribute)
  chosen, seed = [], 5_000_000
  while len(chosen) < n:
    p = faces.sample_face(seed)
    if not p.attributes[col]:
      chosen.append(p)
    seed += 1
  x = np.stack([faces.render(p, size).image for p in chosen])
  on = np.stack([faces.counterfactual(p, attribute, size).image for p in chosen])
  d = features_lib.compute_features(phi, params, on, 32) - features_lib.compute_features(
      phi, params, x, 32)
  return jnp.asarray(d.mean(0))


class Probe(NamedTuple):
  """One probe's settings (the flags): the network, the faces, and the swept settings."""
  weights: str  # '' = ImageNet VGG16, 'random', or a file
  taps: Sequence[str]
  size: int
  bank_size: int
  num_test: int
  k: int
  neighbour_rules: Sequence[str]  # attributes and/or features (swept)
  scalings: Sequence[str]  # swept
  deltas: Sequence[float]  # the warm-started δ sweep
  tvs: Sequence[float]  # λ values (swept)
  beta: float
  iterations: int  # the first δ's
  next_iterations: int  # each further δ's (0 = the same)
  attributes: Sequence[str]
  w_mode: str = "neighbours"  # neighbours | oracle | paired
  paired: int = 32  # identities for w_mode paired


def probe(settings: Probe, out: Path, tag: str) -> list[dict]:
  """Every combination of the swept settings: edits, r and outside change per attribute and δ,
  the pixel baseline; writes `out/<tag><label>.{png,npz}` and appends `out/<tag>records.jsonl`."""
  (weights, taps, size, bank_size, num_test, k, neighbour_rules, scalings, deltas, tvs, beta,
   iterations, next_iterations, attributes, w_mode, paired) = settings
  params, prov = weights_lib.load_weights(pretrained.resolve(weights))
  net = weights_lib.model_for(prov, taps=tuple(taps))
  pipe = pipeline.make(net, params, size, reconstruct.ReverseMapConfig())
  phi, spec = pipe.phi, pipe.spec
  bank_images, bank_attributes = bank_cache(size, bank_size)
  t0 = time.perf_counter()
  bank = jnp.asarray(features_lib.compute_features(phi, params, bank_images, 32))
  bank_s = time.perf_counter() - t0
  names, x, x_attrs, cfs, masks = tests(size, num_test, attributes)
  phi_x = jnp.asarray(features_lib.compute_features(phi, params, x, 32))
  neighbours_lib.attribute_index(attributes, faces.ATTRIBUTES)  # unknown names fail here
  records = []
  for rule, scaling, tv in itertools.product(neighbour_rules, scalings, tvs):
    tv = float(tv)
    nbs = {}

    def directions(phi_x, rule=rule):  # per attribute: its neighbours' (or the oracle's) w
      ws = []
      for a in attributes:
        candidates = neighbours_lib.candidate_masks(
            bank_attributes, neighbours_lib.Edit(a, a), faces.ATTRIBUTES)
        if rule == "attributes":
          nb = neighbours_lib.nearest(bank_attributes, x_attrs, candidates, k, metric="hamming")
        else:
          nb = neighbours_lib.nearest(bank, phi_x, candidates, k)
        nbs[a] = nb
        if w_mode == "neighbours":
          ws.append(attribute_vector.from_bank(bank, nb))
        elif w_mode == "oracle":
          ws.append(jnp.asarray(features_lib.compute_features(phi, params, cfs[a], 32)) - phi_x)
        else:
          ws.append(jnp.broadcast_to(paired_vector(phi, params, a, size, paired), phi_x.shape))
      return ws

    items = [(i, a) for a in attributes for i in range(num_test)]
    solve = scipy_reference.joint_solve(net, spec, reconstruct.ReverseMapConfig(
        tv_weight=tv, tv_beta=beta), params)
    edited = pipeline.edit(
        pipe, x, directions, deltas, pipeline.iterations_for(
            deltas, iterations, next_iterations or iterations),
        scaling=scaling, batch_size=len(items), phi_x=phi_x, solve=solve)
    results = list(edited.edits.images)
    solve_s = edited.seconds["reverse_map_s"]
    # Pixel baseline (best δ per image, as the pipeline) and metrics.
    base = {}
    for j, (i, a) in enumerate(items):
      nb = nbs[a]
      src, tgt = np.asarray(nb.source[i]), np.asarray(nb.target[i])
      cands = [(metrics_lib.counterfactual_ratio(
          metrics_lib.pixel_baseline(x[i], bank_images, src, tgt, d), x[i], cfs[a][i],
          masks[a][i]), d) for d in PIXEL_DELTAS]
      r, d = min(cands)
      b = metrics_lib.pixel_baseline(x[i], bank_images, src, tgt, d)
      base[j] = (r, metrics_lib.outside_change(b, x[i], masks[a][i]))
    label = f"{tag}{rule if w_mode == 'neighbours' else w_mode}_{scaling}_tv{tv:g}"
    for s, delta in enumerate(deltas):
      rows = []
      for j, (i, a) in enumerate(items):
        e = results[s][j]
        rows.append(dict(attribute=a, image=names[i],
                         r=metrics_lib.counterfactual_ratio(e, x[i], cfs[a][i], masks[a][i]),
                         outside=metrics_lib.outside_change(e, x[i], masks[a][i]),
                         baseline_r=base[j][0], baseline_outside=base[j][1]))
      summ = metrics_lib.summarise(rows, attributes)
      rec = dict(weights=weights, w_mode=w_mode, taps=list(taps), size=size, k=k, neighbours=rule,
                 scaling=scaling, tv=tv, beta=beta, delta=float(delta), iterations=iterations,
                 num_test=num_test, solve_s=solve_s, bank_s=bank_s, summary=summ,
                 grid=str(out / f"{label}.png"))
      records.append(rec)
      print(f"{label} δ={delta:g}: " + " | ".join(
          f"{a[:6]} {v['r']:.2f}/{v['outside']:.3f}" for a, v in summ.items())
          + f"   [mean r {np.mean([v['r'] for v in summ.values()]):.2f}, "
          f"max r {max(v['r'] for v in summ.values()):.2f}]  ({solve_s:.0f}s)", flush=True)
    print("  pixel baseline: " + " | ".join(
        f"{a[:6]} {v['baseline_r']:.2f}/{v['baseline_outside']:.3f}" for a, v in summ.items()),
        flush=True)
    grid_rows = []
    for i in range(num_test):
      row = [x[i]]
      for s in range(len(deltas)):
        row += [results[s][items.index((i, a))] for a in attributes]
      row += [cfs[a][i] for a in attributes]
      grid_rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    # Every edit as data, so other judges (experiments.judge_probe) can score it later.
    np.savez_compressed(out / f"{label}.npz", edits=np.stack(results), inputs=x,
                        items=np.array([f"{i}:{a}" for i, a in items]),
                        deltas=np.asarray(deltas, np.float32), names=np.array(names),
                        **{f"cf_{a}": cfs[a] for a in attributes},
                        **{f"mask_{a}": masks[a] for a in attributes})
    figures.save_grid(out / f"{label}.png", grid_rows, row_labels=names,
                      col_labels=["input"] + [f"{a[:5]} {d:g}" for d in deltas
                                               for a in attributes]
                      + [f"true {a[:5]}" for a in attributes])
  with open(out / f"{tag}records.jsonl", "a") as f:
    for rec in records:
      f.write(json.dumps(rec) + "\n")
  return records


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  probe(Probe(_WEIGHTS.value, _TAPS.value, _SIZE.value, _BANK.value, _NUM_TEST.value, _K.value,
              _NEIGHBOURS.value, _SCALING.value, [float(d) for d in _DELTAS.value], _TV.value,
              _BETA.value, _ITERS.value, _NEXT.value, _ATTRS.value, _W_MODE.value,
              _PAIRED.value), Path(_OUT.value), _TAG.value)


if __name__ == "__main__":
  cli.run_main(main)
