"""How local an edit of a real photo is: its change in the attribute's zone vs the rest of the face.

Zones come from the face's own 68 landmarks (dlib's order): `mouth` = the hull of the mouth
(48–67) and the nose's base (31–35: a moustache lies between them), `eyes` = the hull of the
brows (17–26) and eyes (36–47); each hull grown by `ZONE_GROW` about its centre (glasses'
rims and a smile's corners reach a little beyond the points). The face box is the landmarks'
bounding box; "rest" is the face box minus the zone. Changes are mean |edit − photo| over pixels
and channels in 0–255 units.

An edit is local (issue 22) when rest ≤ `REST_MAX`, zone ≥ `RATIO_MIN` × rest and zone ≥
`ZONE_MIN`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
import scipy.spatial

ZONE_POINTS = {"mouth": tuple(range(31, 36)) + tuple(range(48, 68)),
               "eyes": tuple(range(17, 27)) + tuple(range(36, 48))}
# The issue's zones of the generated faces' six attributes (other attributes: no zone, only the
# face box's change is reported).
ZONE_OF = {"moustache": "mouth", "smiling": "mouth", "mouth_open": "mouth",
           "eyeglasses": "eyes", "eyes_open": "eyes"}
ZONE_GROW = 0.2
REST_MAX = 3.0  # 0-255 units
RATIO_MIN = 4.0
ZONE_MIN = 4.0
CHANGED = 3.0  # a pixel "changed" when a channel moved by more than this (0-255)


def zone_mask(points: np.ndarray, zone: str, shape: tuple[int, int]) -> np.ndarray:
  """`[H, W]` bool: the zone's grown hull of `[68, 2]` landmarks (pixel centres at integers)."""
  pts = np.asarray(points, np.float64)[list(ZONE_POINTS[zone])]
  centre = pts.mean(0)
  pts = centre + (pts - centre) * (1.0 + ZONE_GROW)
  hull = pts[scipy.spatial.ConvexHull(pts).vertices]
  image = Image.new("L", (shape[1], shape[0]), 0)
  ImageDraw.Draw(image).polygon([tuple(p + 0.5) for p in hull], fill=1)
  return np.asarray(image, bool)


def face_box(points: np.ndarray, shape: tuple[int, int]) -> tuple[slice, slice]:
  """The landmarks' bounding box (rows, columns), clipped to the photo."""
  lo = np.floor(np.asarray(points).min(0)).astype(int)
  hi = np.ceil(np.asarray(points).max(0)).astype(int) + 1
  return (slice(max(lo[1], 0), min(hi[1], shape[0])), slice(max(lo[0], 0), min(hi[0], shape[1])))


def scores(original: np.ndarray, edited: np.ndarray, points: np.ndarray, attribute: str) -> dict:
  """One photo edit's zone scores.

  Args:
    original, edited: `[H, W, 3]` float in [0, 1].
    points: `[68, 2]` the face's landmarks in the photo.
    attribute: the edit (its zone from `ZONE_OF`; none: zone fields are None).

  Returns:
    dict: zone, zone_mean, rest_mean (0-255), rest_changed (fraction of the rest's pixels with
    a channel moved by > `CHANGED`), outside_box_mean (0-255, the photo beyond the face box),
    ratio (zone / rest), local (the issue's three conditions).
  """
  change = np.abs(np.asarray(edited, np.float64) - np.asarray(original, np.float64)) * 255.0
  shape = change.shape[:2]
  rows, cols = face_box(points, shape)
  in_box = np.zeros(shape, bool)
  in_box[rows, cols] = True
  zone = ZONE_OF.get(attribute)
  in_zone = zone_mask(points, zone, shape) if zone else np.zeros(shape, bool)
  rest = in_box & ~in_zone
  rest_mean = float(change[rest].mean())
  zone_mean = float(change[in_zone].mean()) if zone else None
  out = dict(attribute=attribute, zone=zone, zone_mean=zone_mean, rest_mean=rest_mean,
             rest_changed=float((change[rest].max(-1) > CHANGED).mean()),
             outside_box_mean=float(change[~in_box].mean()) if (~in_box).any() else 0.0)
  out["ratio"] = zone_mean / max(rest_mean, 1e-9) if zone else None
  out["local"] = bool(zone and rest_mean <= REST_MAX and zone_mean >= RATIO_MIN * rest_mean
                      and zone_mean >= ZONE_MIN)
  return out
