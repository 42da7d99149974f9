"""One benchmark run: the reverse-map problem, and each solver on it (the JAX solvers, SciPy, the
PyTorch peer), timed, with peak memory; `worker` runs one from a JSON spec.

Two objectives (`spec["objective"]`): "plain" (the paper's: the solver moves the pixels, projected
onto [0, 1]) and "product" (what the edit runs solve since the where mask: z = clip(x + m ⊙ Δ)
with Δ's luminance per pixel and its chroma at 1/`chroma_scale` of the resolution, dfi_jax/dfi/
where.py; m is the where mask of w = target − φ(x), made by `where.mask` with the default
settings). The torch peer solves the identical problem in both: the same parameters, the same
decoding and the same loss.
"""

from __future__ import annotations

import os

# SciPy's BLAS threads would otherwise spin against XLA's on a small machine (2 cores, measured).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dataclasses
import resource
import time

import numpy as np

from research import scipy_reference

MEGA = 1024.0  # ru_maxrss is in KiB on Linux
OBJECTIVES = ("plain", "product")


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
  phi = features_lib.make_phi(net)
  targets = np.asarray(phi(params, jnp.asarray(goal)))
  base = reconstruct.ReverseMapConfig(tv_weight=spec["tv_weight"], tv_beta=spec["tv_beta"])
  # The loss of an image (both objectives score their final images with it).
  objective = reconstruct.make_objective(net, fspec, base)
  objective_name = spec.get("objective", "plain")
  if objective_name not in OBJECTIVES:
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective_name!r}")
  where = None
  if objective_name == "product":
    from dfi_jax.dfi import where as where_lib
    where_config = where_lib.WhereConfig(mode="features")
    where = where_lib.mask(targets - np.asarray(phi(params, jnp.asarray(z0))), fspec,
                           (size, size), where_config)
    base = dataclasses.replace(base, chroma_scale=spec.get("chroma_scale", 4),
                               where=where_config)
  score = jax.jit(jax.vmap(objective, in_axes=(0, 0, None)))
  losses = lambda images: np.asarray(score(jnp.clip(jnp.asarray(images, jnp.float32), 0, 1),
                                           jnp.asarray(targets), {"params": params}))
  # What the reverse map starts from: the image, and its where mask as a 4th channel.
  start = z0 if where is None else np.concatenate([z0, where[..., None]], axis=-1)
  return dict(net=net, params=params, fspec=fspec, z0=z0, targets=targets, base=base,
              objective=objective, losses=losses, where=where, start=start)


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
  from dfi_jax.dfi import reconstruct
  config = dataclasses.replace(problem["base"], solver=name, chunk=spec["chunk"], **overrides)
  rm = reconstruct.ReverseMap(problem["net"], problem["fspec"], config)
  args = (problem["params"], problem["targets"], problem["start"])
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
  if problem["where"] is not None:
    raise ValueError("the scipy reference solves the plain objective only")
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


def torch_problem(spec: dict, problem: dict):
  """The problem in torch: `(loss [B] of the parameters, decode parameters -> z [B, 3, H, W],
  the starting parameters)`; the parameters are z itself (plain) or (luma [B, 1, H, W],
  chroma [B, 2, ⌈H/k⌉, ⌈W/k⌉]) decoded as `where.decode` does (product)."""
  import torch
  from dfi_jax.dfi import features as features_lib
  from dfi_jax.dfi import where as where_lib
  from dfi_jax.nets import model as model_lib
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
  z0 = torch.from_numpy(np.ascontiguousarray(problem["z0"].transpose(0, 3, 1, 2)))

  def image_loss(z):  # z [B, 3, H, W] -> [B]
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

  if problem["where"] is None:
    return (lambda params: image_loss(params[0])), (lambda params: params[0]), [z0.clone()]
  b, _, h, w = z0.shape
  k = problem["base"].chroma_scale
  where = torch.from_numpy(np.array(problem["where"][:, None]))
  rgb_from_ycc = torch.from_numpy(where_lib.RGB_FROM_YCC)

  def decode(params):
    luma, chroma = params
    if chroma.shape[2:] != (h, w):  # bilinear, half-pixel centres, as jax.image.resize
      chroma = torch.nn.functional.interpolate(chroma, size=(h, w), mode="bilinear",
                                               align_corners=False)
    ycc = torch.cat([luma, chroma], dim=1)
    change = torch.einsum("ij,bjhw->bihw", rgb_from_ycc, ycc)
    return torch.clamp(z0 + where * change, 0.0, 1.0)

  start = [torch.zeros(b, 1, h, w), torch.zeros(b, 2, -(-h // k), -(-w // k))]
  return (lambda params: image_loss(decode(params))), decode, start


def run_torch(spec: dict, problem: dict) -> dict:
  import torch
  if spec.get("torch_threads"):
    torch.set_num_threads(spec["torch_threads"])
  loss_fn, decode, start = torch_problem(spec, problem)
  t0 = time.perf_counter()
  warm = [p.clone().requires_grad_(True) for p in start]
  loss_fn(warm).sum().backward()
  compile_s = time.perf_counter() - t0
  params = [p.clone().requires_grad_(True) for p in start]
  n = spec["iterations"]
  opt = torch.optim.LBFGS(params, lr=1.0, max_iter=n, max_eval=10 * n, tolerance_grad=0.0,
                          tolerance_change=0.0, history_size=10, line_search_fn=None)
  trajectory, evaluations = [], [0]

  def closure():
    opt.zero_grad()
    loss = loss_fn(params)
    total = loss.sum()
    total.backward()
    evaluations[0] += 1
    trajectory.append((time.perf_counter() - t0, None, float(loss.detach().mean())))
    return total

  t0 = time.perf_counter()
  opt.step(closure)
  wall = time.perf_counter() - t0
  iterations = opt.state[opt._params[0]]["n_iter"]
  with torch.no_grad():
    start_loss = float(loss_fn(start).mean())
    images = decode(params).numpy().transpose(0, 2, 3, 1).copy()
  return dict(wall_s=wall, compile_s=compile_s, images=images,
              evaluations=float(evaluations[0]), iterations=int(iterations),
              trajectory=trajectory, torch_start_loss=start_loss,
              torch_threads=torch.get_num_threads())


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
  out.update(objective=spec.get("objective", "plain"))
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
