"""Edit quality against counterfactual ground truth, and the pixel-space baseline.

For a test image x, its edit e and its counterfactual x_cf (the same identity rendered with the
attribute toggled), inside the attribute's region m:

  r = ‖(e − x_cf)·m‖ / ‖(x − x_cf)·m‖     (0 = perfect, 1 = no better than doing nothing)

and outside it the mean absolute change |e − x| (0 = the rest of the face stayed).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def counterfactual_ratio(edit: np.ndarray, x: np.ndarray, x_cf: np.ndarray,
                         mask: np.ndarray) -> float:
  """r for one image: `[H, W, 3]` arrays, `mask` `[H, W]` bool; NaN where x and x_cf agree
  inside the mask (r is undefined there)."""
  m = mask[..., None].astype(np.float64)
  num = np.sqrt(np.sum(((edit - x_cf) * m) ** 2))
  den = np.sqrt(np.sum(((x - x_cf) * m) ** 2))
  return float(num / den) if den > 0 else float("nan")


def outside_change(edit: np.ndarray, x: np.ndarray, mask: np.ndarray) -> float:
  """Mean |e − x| over pixels and channels outside `mask` (`[H, W]` bool)."""
  outside = ~mask
  if not outside.any():
    return 0.0
  return float(np.mean(np.abs(edit - x)[outside]))


def pixel_baseline(x: np.ndarray, bank_images: np.ndarray, source: np.ndarray,
                   target: np.ndarray, delta: float) -> np.ndarray:
  """x + δ·(mean target pixels − mean source pixels), clipped to [0, 1].

  Args:
    x: `[H, W, 3]` float32.
    bank_images: `[N, H, W, 3]` float32.
    source, target: `[K]` int bank indices.
  """
  direction = bank_images[target].mean(0) - bank_images[source].mean(0)
  return np.clip(x + delta * direction, 0.0, 1.0).astype(np.float32)


def summarise(rows: Sequence[dict], attributes: Sequence[str]) -> dict:
  """Per-attribute means of the per-image records `{attribute, r, outside, ...}` (numeric
  fields only; text fields such as the judge's list of changed attributes are left out)."""
  out = {}
  for a in attributes:
    mine = [row for row in rows if row["attribute"] == a]
    if not mine:
      continue
    out[a] = {key: float(np.nanmean([row[key] for row in mine]))
              for key in mine[0] if key not in ("attribute", "image", "baseline_delta")
              and not isinstance(mine[0][key], str)}
    out[a]["count"] = len(mine)
  return out


def table_markdown(summary: dict, columns: Sequence[tuple[str, str]]) -> str:
  """A Markdown table: one row per attribute, `columns` = (key, heading) pairs ("–" where a
  summary lacks the key, e.g. the judge's columns when it was off)."""
  head = "| attribute | " + " | ".join(h for _, h in columns) + " |"
  rule = "|---" * (len(columns) + 1) + "|"
  lines = [head, rule]
  for a, vals in summary.items():
    lines.append(f"| {a} | " + " | ".join(f"{vals[k]:.3f}" if k in vals else "–"
                                          for k, _ in columns) + " |")
  return "\n".join(lines)
