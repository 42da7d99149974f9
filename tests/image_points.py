"""Where things land after a warp: point images and their centroids (tests of align, photos)."""

import numpy as np


def dots(points, shape, radius: int = 0) -> np.ndarray:
  """`[H, W, 3]` float32 zeros with a white square of side 2·radius + 1 at each `(x, y)`."""
  image = np.zeros(tuple(shape) + (3,), np.float32)
  for x, y in np.round(np.asarray(points)).astype(int):
    image[y - radius:y + radius + 1, x - radius:x + radius + 1] = 1.0
  return image


def peak(image: np.ndarray, x: float, y: float, r: int = 2) -> tuple[float, float]:
  """The centroid `(x, y)` of channel 0's positive values within `r` pixels of `(x, y)`."""
  i, j = int(round(y)), int(round(x))
  patch = np.clip(image[i - r:i + r + 1, j - r:j + r + 1, 0], 0, None)
  yy, xx = np.mgrid[i - r:i + r + 1, j - r:j + r + 1]
  return (patch * xx).sum() / patch.sum(), (patch * yy).sum() / patch.sum()
