"""Landmark alignment: similarity fits, warps, hull masks, and neighbours aligned onto a face.

The geometry (`similarity_fit`, `warp`, `hull_mask`) is shared by the high-resolution path
(`highres`), own photos (`photos`: a face found in a photo is warped into the bank's landmark
frame) and issue 9's alignment lever below.

DFI's w = mean φ(targets) − mean φ(sources) assumes φ encodes an attribute the same way on every
face. Features that are not invariant to where the eyes, mouth and jaw are (random or briefly
trained ones at 64²) turn the neighbours' differences in placement and face shape into noise
in w. Here each neighbour image is first warped by the similarity (or affine) transform that
maps its landmarks onto the test face's, as the paper's demo2 does and `highres` does for its
path, and only then passed through φ:

  w_b = mean_k φ(warp(target_k → x_b)) − mean_k φ(warp(source_k → x_b)).

Neighbour *selection* is unchanged (the caller's rule: φ-space KNN or attribute Hamming).

Landmarks use the convention of `faces` (pixel (row i, column j) centred at (x, y) = (j, i));
`warp` takes PIL's continuous coordinates (centres at half-integers): `pixel_matrix` converts.

`same_geometry` is the diagnostic upper bound on generated faces: a neighbour re-rendered with
the test face's geometry (placement, face shape, feature sizes and positions), keeping its own
colours, hair style, lighting, texture, accessory styles and attributes: perfect alignment.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dfi_jax.data import faces
from dfi_jax.dfi import attribute_vector as vector_lib
from dfi_jax.dfi import features as features_lib
from dfi_jax.dfi.neighbours import Neighbours

TRANSFORMS = ("similarity", "affine")

# `FaceParams` fields that place or shape the face and its features (not colour, style, lighting
# or texture): copying them makes two identities' landmarks and feature outlines coincide.
GEOMETRY_FIELDS = (
    "centre_x", "eye_line", "scale", "face_width", "face_height", "jaw", "hairline", "hair_part",
    "brow_thickness", "brow_height", "brow_arch", "brow_tilt", "eye_spacing", "eye_size",
    "eye_aspect", "nose_length", "nose_width", "mouth_width", "mouth_height", "lip_thickness",
    "ear_size")


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
  """Least-squares similarity (scale, rotation, translation) mapping `[L, 2]` src onto dst.

  Returns the `[2, 3]` matrix and the RMS residual in pixels.
  """
  mu_s, mu_d = src.mean(0), dst.mean(0)
  s, d = src - mu_s, dst - mu_d
  # Complex-number form: dst ≈ a·src + t with a = scale·e^{iθ}.
  zs, zd = s[:, 0] + 1j * s[:, 1], d[:, 0] + 1j * d[:, 1]
  a = np.vdot(zs, zd) / max(np.vdot(zs, zs).real, 1e-12)
  m = np.array([[a.real, -a.imag], [a.imag, a.real]])
  t = mu_d - m @ mu_s
  residual = float(np.sqrt(np.mean(np.sum((src @ m.T + t - dst) ** 2, axis=1))))
  return np.concatenate([m, t[:, None]], axis=1), residual


def invert(matrix: np.ndarray) -> np.ndarray:
  """The `[2, 3]` inverse of a `[2, 3]` affine map."""
  return np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  """`[..., 2]` points mapped by a `[2, 3]` matrix."""
  return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def pixel_matrix(matrix: np.ndarray) -> np.ndarray:
  """A `[2, 3]` map in landmark coordinates (pixel centres at integers) as `warp` takes it
  (PIL's continuous coordinates, centres at half-integers): c_dst = A (c_src − ½) + t + ½."""
  a, t = matrix[:, :2], matrix[:, 2]
  return np.concatenate([a, (t + 0.5 - a @ np.full(2, 0.5))[:, None]], axis=1)


def warp(image: np.ndarray, matrix: np.ndarray, size, clip: bool = True) -> np.ndarray:
  """`[H, W, C]` warped by the `[2, 3]` forward map into a `size` frame (bicubic).

  Args:
    image: `[H, W, C]` float.
    matrix: forward map in PIL's continuous coordinates (`pixel_matrix` converts).
    size: the output side, or `(height, width)`.
    clip: clip to [0, 1] (images); False keeps signed values (changes).

  Returns `[height, width, C]` float32; outside the source image is 0. No antialiasing: shrink
  first when the map shrinks by much.
  """
  height, width = (size, size) if np.isscalar(size) else size
  inv = tuple(invert(matrix).ravel())
  channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), "F")
                         .transform((int(width), int(height)), Image.Transform.AFFINE, inv,
                                    Image.Resampling.BICUBIC))
              for c in range(image.shape[-1])]
  out = np.stack(channels, -1)
  return (np.clip(out, 0.0, 1.0) if clip else out).astype(np.float32)


def hull_mask(landmarks: np.ndarray, size, grow: float = 0.35, feather: float = 0.04
              ) -> np.ndarray:
  """Soft `[height, width]` mask: the landmarks' hull grown by `grow` × its size, feathered.

  Args:
    landmarks: `[L, 2]` points (PIL coordinates).
    size: the side, or `(height, width)`.
    grow: the hull is scaled by 1 + grow about the points' mean.
    feather: Gaussian blur radius as a fraction of the larger side.

  Returns float32 in [0, 1]; exactly 0 beyond the blur's reach of the grown hull.
  """
  height, width = (size, size) if np.isscalar(size) else size
  centre = landmarks.mean(0)
  pts = centre + (landmarks - centre) * (1.0 + grow)
  ordered = pts[np.argsort(np.arctan2(*(pts - centre).T[::-1]))]
  mask = Image.new("L", (int(width), int(height)), 0)
  ImageDraw.Draw(mask).polygon([tuple(p) for p in ordered], fill=255)
  mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, feather * max(height, width))))
  return np.asarray(mask, np.float32) / 255.0


def affine_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
  """Least-squares affine map of `[L, 2]` src onto dst: the `[2, 3]` matrix and RMS residual."""
  a = np.concatenate([src, np.ones((len(src), 1))], axis=1)
  sol, *_ = np.linalg.lstsq(a, dst, rcond=None)  # [3, 2]
  matrix = sol.T
  residual = float(np.sqrt(np.mean(np.sum((a @ sol - dst) ** 2, axis=1))))
  return matrix, residual


def fit(src: np.ndarray, dst: np.ndarray, transform: str = "similarity"
        ) -> tuple[np.ndarray, float]:
  """`[2, 3]` matrix mapping landmarks `src` onto `dst` (least squares) and its RMS residual."""
  if transform == "similarity":
    return similarity_fit(np.asarray(src, np.float64), np.asarray(dst, np.float64))
  if transform == "affine":
    return affine_fit(np.asarray(src, np.float64), np.asarray(dst, np.float64))
  raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")


def warp_onto(image: np.ndarray, src_landmarks: np.ndarray, dst_landmarks: np.ndarray,
              transform: str = "similarity") -> np.ndarray:
  """`[S, S, 3]` image warped so its landmarks land on `dst_landmarks` (same size, bicubic).

  Pixels brought in from outside the image repeat its edge (a quarter of the side is padded).
  """
  size = image.shape[0]
  matrix, _ = fit(src_landmarks, dst_landmarks, transform)
  pad = max(1, size // 4)
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
  # The padded source is shifted by `pad`: p_dst = A (p_src − pad) + t.
  shifted = np.concatenate([matrix[:, :2], (matrix[:, 2] - matrix[:, :2] @ np.full(2, pad))
                            [:, None]], axis=1)
  return warp(padded, pixel_matrix(shifted), size)


def landmarks(params: Sequence[faces.FaceParams], size: int) -> np.ndarray:
  """`[N, L, 2]` landmarks of generated faces at `size`² (attribute-independent)."""
  return np.stack([faces.layout_landmarks(p, size) for p in params]).astype(np.float64)


def same_geometry(params: faces.FaceParams, like: faces.FaceParams) -> faces.FaceParams:
  """`params` with `like`'s geometry (`GEOMETRY_FIELDS`): a perfectly aligned neighbour."""
  return dataclasses.replace(params, **{f: getattr(like, f) for f in GEOMETRY_FIELDS})


class AlignedVectors(NamedTuple):
  """Per edit: `w` `[B, D]` (mean φ of aligned targets − sources) and `pixels` `[B, S, S, 3]`
  (the same difference of aligned pixels, for the pixel-space baseline)."""
  w: list[np.ndarray]
  pixels: list[np.ndarray]


def neighbour_vectors(phi, params, images_for, num_tests: int,
                      neighbour_sets: Sequence[Neighbours], batch_size: int = 32
                      ) -> AlignedVectors:
  """w (and the pixel difference) for every test image and edit, from per-test neighbour images.

  Args:
    phi, params: `features.make_phi` and the network's parameters.
    images_for: `(b, indices [U]) -> [U, S, S, 3]`: bank images `indices` as used for test b
      (warped onto it, or re-rendered with its geometry).
    num_tests: B.
    neighbour_sets: per edit, `Neighbours` of `[B, K]` bank indices.

  Each bank image used by any edit of test image b is made and passed through φ once.
  """
  ws = [[None] * num_tests for _ in neighbour_sets]
  pix = [[None] * num_tests for _ in neighbour_sets]
  for b in range(num_tests):
    sets = [Neighbours(np.asarray(nb.source[b:b + 1]), np.asarray(nb.target[b:b + 1]))
            for nb in neighbour_sets]  # per edit, this test image's `[1, K]` rows
    used = np.unique(np.concatenate([np.ravel(s) for nb in sets for s in nb]))
    # [E, U]: each used row's weight in each edit's w (+1/K targets, −1/K sources)
    weights = np.concatenate([vector_lib.row_weights(nb, used) for nb in sets])
    images = images_for(b, used)
    w = 0.0
    for start in range(0, len(used), 8 * batch_size):  # bounded memory: ~8 batches of φ
      chunk = slice(start, start + 8 * batch_size)
      f = features_lib.compute_features(phi, params, images[chunk], batch_size)
      w = w + weights[:, chunk] @ f.astype(np.float64)
    p = np.tensordot(weights, images, axes=(1, 0))
    for e in range(len(sets)):
      ws[e][b], pix[e][b] = w[e].astype(np.float32), p[e].astype(np.float32)
  return AlignedVectors([np.stack(w) for w in ws], [np.stack(p) for p in pix])


class Landmarked(NamedTuple):
  """Images and their landmarks in the same pixels: `images` `[N, S, S, 3]`, `landmarks`
  `[N, L, 2]`."""
  images: np.ndarray
  landmarks: np.ndarray


def aligned_vectors(phi, params, bank: Landmarked, test_landmarks: np.ndarray,
                    neighbour_sets: Sequence[Neighbours], transform: str = "similarity",
                    batch_size: int = 32) -> AlignedVectors:
  """w for every test image and edit from neighbours warped onto that test image.

  Args:
    phi, params: `features.make_phi` and the network's parameters.
    bank: the bank's images and landmarks.
    test_landmarks: `[B, L, 2]`.
    neighbour_sets: per edit, `Neighbours` of `[B, K]` indices into `bank.images`.
    transform: 'similarity' or 'affine'.
  """
  fit(bank.landmarks[0], test_landmarks[0], transform)  # a bad transform fails here, early

  def images_for(b, used):
    return np.stack([warp_onto(bank.images[j], bank.landmarks[j], test_landmarks[b], transform)
                     for j in used])

  return neighbour_vectors(phi, params, images_for, len(test_landmarks), neighbour_sets,
                           batch_size)
