"""Train fast mode's decoder: `python -m experiments.train_decoder --out=FILE.npz`.

Renders the training faces (the demo's bank), trains D to invert φ (dfi_jax/dfi/decoder.py) with
optax/Adam, and writes the decoder file (provenance: the command, every setting, the weights file
it inverts, the losses) and `<out>.png`: held-out faces (top row) over their decodings D(φ(x)).
Every `save_every` steps the training state goes to `<out>.resume.npz`; rerunning the same
command continues from there (another config is refused), and it is removed once `--out` is
written. All files are written atomically.
"""

import shlex
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from dfi_jax.dfi import decoder as decoder_lib
from dfi_jax.data import faces
from dfi_jax.dfi import features as features_lib
from dfi_jax.outputs import figures
from dfi_jax.base import files as files_lib
from dfi_jax.nets import pretrained
from dfi_jax.dfi import reconstruct
from dfi_jax.base import run_state
from dfi_jax.base import workdir_lock
from dfi_jax.nets import weights as weights_lib
from experiments import cli

_CONFIG = cli.define_config_file(
    "experiments/configs/decoder.py", "Config file (FILE or FILE:variant).")
_OUT, _OVERWRITE = cli.define_output_file("Decoder")

def evaluate(net, vgg_params, spec, params, images) -> dict:
  """Held-out pixel MSE and the reverse map's feature term (TV not included) of D(φ(x))."""
  phi = features_lib.make_phi(net)
  phi_x = phi(vgg_params, jnp.asarray(images))
  decoded = decoder_lib.apply(params, phi_x, spec)
  feature = jax.vmap(reconstruct.feature_loss, in_axes=(0, 0, None))(
      phi(vgg_params, decoded), phi_x, spec.features)
  return dict(pixel_mse=float(jnp.mean((decoded - images) ** 2)),
              feature_loss=float(jnp.mean(feature)), decoded=np.asarray(decoded))


def main(argv):
  del argv  # cli.call_main refuses positional arguments
  c = run_state.split_lists(_CONFIG.value)
  run_state.check_config(c, decoder_lib.TRAINING_RULES)
  out = cli.check_new_output(_OUT.value, _OVERWRITE.value)
  if out.suffix != ".npz":
    raise ValueError(f"--out={out}: expected a path ending in .npz")
  if out.with_suffix(".png").exists() and not _OVERWRITE.value:
    raise ValueError(f"{out.with_suffix('.png')} (--out's preview) exists; pass --overwrite to "
                     "replace it")
  for field in ("weights", "init_from"):
    if c[field] and not (field == "weights" and c[field] in pretrained.NAMED):
      files_lib.check_input_file(c[field], f"--config.{field}={c[field]}")
  out.parent.mkdir(parents=True, exist_ok=True)
  # One training per --out at a time: two would write the same resume file.
  with workdir_lock.hold_lock(out.parent / f".{out.name}.lock", f"--out={out}", keep=False):
    train(c, out)


def kept() -> str:
  """What an interrupted training leaves, in words (for Ctrl-C's one line)."""
  resume = Path(_OUT.value or "-").with_suffix(".resume.npz")
  return (f"the last checkpoint {resume} is kept; the same command resumes from it"
          if resume.exists() else "no checkpoint was written yet")


def train(c, out: Path) -> None:
  """Trains the decoder of config `c` and writes `out` and its preview."""
  command = "python -m experiments.train_decoder " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  weights_path = str(pretrained.resolve(c.weights))
  vgg_params, vgg_prov = weights_lib.load_weights(weights_path)
  net = weights_lib.model_for(vgg_prov, taps=tuple(c.taps))
  fspec = features_lib.feature_spec(net, vgg_params, (c.image_size, c.image_size))
  spec = decoder_lib.spec_for(fspec, c.image_size, c.channels)
  vgg_params = jax.tree.map(jnp.asarray, vgg_params)

  print(f"rendering {c.pool_size} training faces at {c.image_size}²", flush=True)
  images, _ = faces.generate(range(c.pool_seed, c.pool_seed + c.pool_size), c.image_size)
  valid, _ = faces.generate(range(c.valid_seed, c.valid_seed + c.valid_size), c.image_size)

  optimizer = optax.adam(optax.cosine_decay_schedule(c.learning_rate, max(c.steps, 1)))
  key = jax.random.key(c.seed)
  if c.init_from:  # fine-tune a trained decoder (e.g. with the objective on edit targets)
    init_params, init_spec, _ = decoder_lib.load(c.init_from)
    if init_spec != spec:
      raise ValueError(f"--config.init_from={c.init_from}: made for {init_spec}, not {spec}")
  else:
    init_params = decoder_lib.init(key, spec)
  state = decoder_lib.init_train_state(init_params, optimizer)
  settings = dict(config=c.to_dict(), weights_sha256=run_state.file_sha256(weights_path),
                  init_sha256=run_state.file_sha256(c.init_from) if c.init_from else "")
  resume_path = out.with_suffix(".resume.npz")
  resumed = decoder_lib.load_train_state(resume_path, state, settings)
  if resumed is not None:
    state = resumed
    print(f"resuming from {resume_path} at step {int(state.step)}", flush=True)
  step_fn = decoder_lib.make_train_step(net, spec, optimizer, c.feature_weight, c.edit_delta,
                                        c.tv_weight, c.tv_beta)
  t0, metrics = time.perf_counter(), {}
  with tqdm(total=c.steps, initial=int(state.step), desc="train decoder", unit="step") as bar:
    while int(state.step) < c.steps:
      i = int(state.step)
      # Batches depend only on (seed, step), so a resumed run sees the same ones.
      idx = np.random.default_rng([c.seed, i]).integers(0, len(images), c.batch_size)
      state, metrics = step_fn(state, vgg_params, images[idx], jax.random.fold_in(key, i))
      bar.update(1)
      if i % 25 == 0 or i == c.steps - 1:
        bar.set_postfix({k: f"{float(v):.4g}" for k, v in metrics.items()})
      if (i + 1) % c.save_every == 0 and i + 1 < c.steps:
        decoder_lib.save_train_state(resume_path, state, settings)
  seconds = time.perf_counter() - t0
  held_out = evaluate(net, vgg_params, spec, state.params, valid)
  baseline = evaluate(net, vgg_params, spec, decoder_lib.init(key, spec), valid)
  summary = dict(train_seconds=seconds, steps=c.steps, resumed=resumed is not None,
                 final_train={k: float(v) for k, v in metrics.items()},
                 held_out_pixel_mse=held_out["pixel_mse"],
                 held_out_feature_loss=held_out["feature_loss"],
                 untrained_held_out_pixel_mse=baseline["pixel_mse"])
  prov = decoder_lib.provenance_for(
      spec, weights_path, vgg_prov, command,
      description=(f"φ decoder ({','.join(c.taps)} of {vgg_prov['description']}) trained "
                   f"{c.steps} steps on {c.pool_size} generated {c.image_size}² faces"),
      training=c.to_dict(), training_summary=summary)
  decoder_lib.save(out, state.params, prov)
  preview = out.with_suffix(".png")
  n = min(8, c.valid_size)
  figures.save_grid(preview, [list(valid[:n]), list(held_out["decoded"][:n])],
                    row_labels=["input x", "D(phi(x))"])
  if resume_path.exists():
    resume_path.unlink()
  print(f"wrote {out} and {preview} in {seconds:.0f} s of training: held-out pixel MSE "
        f"{held_out['pixel_mse']:.5f} (untrained {baseline['pixel_mse']:.5f}), "
        f"feature loss {held_out['feature_loss']:.4g}")


if __name__ == "__main__":
  cli.run_main(main, kept=kept)
