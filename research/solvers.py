"""One benchmark run: the reverse-map problem, and each solver on it (the JAX solvers, SciPy, the
PyTorch peer), timed, with peak memory; `worker` runs one from a JSON spec."""

from __future__ import annotations

import os

# SciPy's BLAS threads would otherwise spin against XLA's on a small machine (2 cores, measured).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import resource
import time

import numpy as np

from research import scipy_reference

MEGA = 1024.0  # ru_maxrss is in KiB on Linux


# ---------------------------------------------------------------------------------------
# The problem every solver solves.


def conv_gflop(size: int, taps, width: float = 1.0, architecture: str = "vgg19") -> float:
  """Forward GFLOP of the network's convolutions up to the deepest tap for one `size`² image."""
  from dfi_jax.nets import model as model_lib
  return model_lib.conv_gflop(size, taps, width, architecture)


def smooth_images(seed: int, batch: int, size: int) -> np.ndarray:
  """`[B, S, S, 3]` float32 in [0, 1]: blurry colour fields (a stand-in for photos)."""
  import jax
  import jax.numpy as jnp
  coarse = jax.random.uniform(jax.random.key(seed), (batch, 6, 6, 3))
  fine = jax.random.uniform(jax.random.fold_in(jax.random.key(seed), 1), (batch, size, size, 3))
  img = jax.image.resize(coarse, (batch, size, size, 3), "cubic") + 0.05 * (fine - 0.5)
  return np.asarray(jnp.clip(img, 0.0, 1.0), np.float32)


def make_problem(spec: dict):
  """Network, weights, start images `z0` and targets for one run (deterministic)."""
  import jax
  import jax.numpy as jnp
  from dfi_jax.dfi import features as features_lib
  from dfi_jax.nets import model as model_lib
  from dfi_jax.dfi import reconstruct
  from dfi_jax.nets import weights as weights_lib

  taps = tuple(spec["taps"])
  arch = spec.get("architecture", "vgg19")
  params = weights_lib.init_random(jax.random.key(spec["seed"]), width=spec["width"],
                                   last_layer=model_lib.deepest_layer(arch, taps),
                                   architecture=arch)
  net = model_lib.VGG(taps=taps, width=spec["width"], architecture=arch)
  size, batch = spec["size"], spec["batch"]
  fspec = features_lib.feature_spec(net, params, (size, size))
  z0 = smooth_images(spec["seed"] + 1, batch, size)
  goal = smooth_images(spec["seed"] + 2, batch, size)
  targets = np.asarray(features_lib.make_phi(net)(params, jnp.asarray(goal)))
  base = reconstruct.ReverseMapConfig(tv_weight=spec["tv_weight"], tv_beta=spec["tv_beta"])
  objective = reconstruct.make_objective(net, fspec, base)
  score = jax.jit(jax.vmap(objective, in_axes=(0, 0, None)))
  losses = lambda images: np.asarray(score(jnp.clip(jnp.asarray(images, jnp.float32), 0, 1),
                                           jnp.asarray(targets), {"params": params}))
  return dict(net=net, params=params, fspec=fspec, z0=z0, targets=targets, base=base,
              objective=objective, losses=losses)


def parse_solver(solver: str) -> tuple[str, dict]:
  """`name[:field=value,...]` -> (name, ReverseMapConfig overrides with typed values)."""
  from dfi_jax.dfi import reconstruct
  name, _, rest = solver.partition(":")
  fields = {f.name: f for f in reconstruct.ReverseMapConfig.__dataclass_fields__.values()}
  overrides = {}
  for item in filter(None, rest.split(",")):
    key, _, value = item.partition("=")
    if key not in fields:
      raise ValueError(f"unknown ReverseMapConfig field {key!r} in solver {solver!r}")
    kind = type(getattr(reconstruct.ReverseMapConfig(), key))
    overrides[key] = bool(int(value)) if kind is bool else kind(value)
  if name not in reconstruct.SOLVERS + ("scipy", "torch"):
    raise ValueError(f"unknown solver {name!r}; expected one of "
                     f"{reconstruct.SOLVERS + ('scipy', 'torch')}")
  if name == "torch" and overrides:
    raise ValueError("the torch peer takes no overrides")
  return name, overrides


def rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MEGA


# ---------------------------------------------------------------------------------------
# One run per process.


def run_jax(spec: dict, problem: dict, name: str, overrides: dict) -> dict:
  import dataclasses
  from dfi_jax.dfi import reconstruct
  config = dataclasses.replace(problem["base"], solver=name, chunk=spec["chunk"], **overrides)
  rm = reconstruct.ReverseMap(problem["net"], problem["fspec"], config)
  args = (problem["params"], problem["targets"], problem["z0"])
  t0 = time.perf_counter()
  rm(*args, spec["chunk"])  # compiles init and the chunk
  compile_s = time.perf_counter() - t0
  trajectory = []
  t0 = time.perf_counter()
  result = rm(*args, spec["iterations"], on_chunk=lambda done, loss: trajectory.append(
      (time.perf_counter() - t0, done, float(np.mean(loss)))))
  wall = time.perf_counter() - t0
  return dict(wall_s=wall, compile_s=compile_s, images=result.images,
              evaluations=float(np.mean(result.evaluations)), iterations=result.iterations,
              trajectory=trajectory)


def run_scipy(spec: dict, problem: dict, overrides: dict) -> dict:
  import jax
  import jax.numpy as jnp
  from dfi_jax.nets import model as model_lib
  history = overrides.get("history", 10)
  variables = {"params": problem["params"],
               "backward": model_lib.backward_kernels(problem["params"])}
  fg = jax.jit(jax.value_and_grad(problem["objective"]))
  z0, targets = problem["z0"], problem["targets"]
  t0 = time.perf_counter()
  jax.block_until_ready(fg(jnp.asarray(z0[0]), jnp.asarray(targets[0]), variables))
  compile_s = time.perf_counter() - t0
  images, evaluations, trajectory = [], 0, []
  t0 = time.perf_counter()
  for i in range(len(z0)):
    target = jnp.asarray(targets[i])

    def value_and_grad(z):
      v, g = fg(z, target, variables)
      if len(z0) == 1:
        trajectory.append((time.perf_counter() - t0, None, float(v)))
      return v, g

    image, res = scipy_reference.lbfgsb(value_and_grad, z0[i], spec["iterations"], history,
                                        ftol=0.0, gtol=0.0, maxfun=10 * spec["iterations"])
    images.append(image)
    evaluations += res.nfev
  wall = time.perf_counter() - t0
  return dict(wall_s=wall, compile_s=compile_s, images=np.stack(images),
              evaluations=evaluations / len(z0), iterations=spec["iterations"],
              trajectory=trajectory)


def run_torch(spec: dict, problem: dict) -> dict:
  import torch
  from dfi_jax.dfi import features as features_lib
  from dfi_jax.nets import model as model_lib
  if spec.get("torch_threads"):
    torch.set_num_threads(spec["torch_threads"])
  taps = tuple(spec["taps"])
  arch = spec.get("architecture", "vgg19")
  stop = model_lib.deepest_layer(arch, taps)
  convs = {n: (torch.from_numpy(np.ascontiguousarray(np.transpose(p["kernel"], (3, 2, 0, 1)))),
               torch.from_numpy(np.asarray(p["bias"])))
           for n, p in problem["params"].items()}
  mean = torch.tensor(model_lib.TORCHVISION_MEAN).view(1, 3, 1, 1)
  std = torch.tensor(model_lib.TORCHVISION_STD).view(1, 3, 1, 1)
  parts = features_lib.split(problem["targets"], problem["fspec"])
  targets = {t: torch.from_numpy(np.ascontiguousarray(
      parts[t].reshape(-1, *s).transpose(0, 3, 1, 2))) for t, s in zip(taps, problem["fspec"].shapes)}
  tv_weight, beta = spec["tv_weight"], spec["tv_beta"]

  def loss_fn(z):  # z [B, 3, H, W] -> [B]
    x = (z - mean) / std
    feature = 0.0
    for name, base in model_lib.layout(arch):
      if not base:
        x = torch.nn.functional.max_pool2d(x, 2, 2)
        continue
      x = torch.relu(torch.nn.functional.conv2d(x, *convs[name], padding=1))
      if name in taps:
        feature = feature + 0.5 * ((x - targets[name]) ** 2).sum(dim=(1, 2, 3))
      if name == stop:
        break
    d = z * 255.0
    dx = d[:, :, :-1, 1:] - d[:, :, :-1, :-1]
    dy = d[:, :, 1:, :-1] - d[:, :, :-1, :-1]
    tv = torch.clamp(dx * dx + dy * dy, min=1e-3).pow(beta / 2.0).sum(dim=(1, 2, 3))
    return feature / len(taps) + tv_weight * tv

  z0 = torch.from_numpy(np.ascontiguousarray(problem["z0"].transpose(0, 3, 1, 2)))
  t0 = time.perf_counter()
  warm = z0.clone().requires_grad_(True)
  loss_fn(warm).sum().backward()
  compile_s = time.perf_counter() - t0
  z = z0.clone().requires_grad_(True)
  n = spec["iterations"]
  opt = torch.optim.LBFGS([z], lr=1.0, max_iter=n, max_eval=10 * n, tolerance_grad=0.0,
                          tolerance_change=0.0, history_size=10, line_search_fn=None)
  trajectory, evaluations = [], [0]

  def closure():
    opt.zero_grad()
    loss = loss_fn(z)
    total = loss.sum()
    total.backward()
    evaluations[0] += 1
    trajectory.append((time.perf_counter() - t0, None, float(loss.detach().mean())))
    return total

  t0 = time.perf_counter()
  opt.step(closure)
  wall = time.perf_counter() - t0
  iterations = opt.state[opt._params[0]]["n_iter"]
  start = float(loss_fn(z0).mean())
  return dict(wall_s=wall, compile_s=compile_s,
              images=z.detach().numpy().transpose(0, 2, 3, 1).copy(),
              evaluations=float(evaluations[0]), iterations=int(iterations),
              trajectory=trajectory, torch_start_loss=start, torch_threads=torch.get_num_threads())


def worker(spec: dict) -> dict:
  if spec.get("xla_flags"):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + spec["xla_flags"]).strip()
  import jax
  problem = make_problem(spec)
  rss_before = rss_mb()
  name, overrides = parse_solver(spec["solver"])
  if name == "torch":
    out = run_torch(spec, problem)
  elif name == "scipy":
    out = run_scipy(spec, problem, overrides)
  else:
    out = run_jax(spec, problem, name, overrides)
  images = out.pop("images")
  finals = problem["losses"](images)
  start = float(np.mean(problem["losses"](problem["z0"])))
  out.update(loss=float(np.mean(finals)), finite=bool(np.isfinite(finals).all()),
             start_loss=start, rss_before_mb=rss_before, peak_rss_mb=rss_mb(),
             out_of_box=float(np.mean((images < 0) | (images > 1))), jax=jax.__version__,
             backend=jax.default_backend())
  return out


def time_to_loss(trajectory, goal: float) -> float | None:
  for t, _, loss in trajectory:
    if loss <= goal:
      return t
  return None
