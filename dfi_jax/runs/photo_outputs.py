"""What an own-photo run writes besides the edit grid: per photo and edit, the photo with all its
faces edited (`photos.paste`); side-by-sides of the δ sweep; the aligned crops with their
landmarks; animations of the sweep (GIF or WebP)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from dfi_jax.outputs import figures
from dfi_jax.data import fitting
from dfi_jax.base import files as files_lib
from dfi_jax.data import image_io
from dfi_jax.data import sources
from dfi_jax.eval import photo_zones
from dfi_jax.outputs import names as output_names
from dfi_jax.runs.photos import crop_points, paste

PANEL = 512  # longest side of a photo in side-by-sides and animations
FRAME_MS = 500  # per frame of an animation
CLOSEUP = 256  # side of each panel of a face close-up
CLOSEUP_MARGIN = 0.35  # the close-up shows the face's box grown by this much on each side
PHOTO_WIDTH = 360  # px on the page for a full-size photo


def _photo_rows(tests: sources.TestImages) -> dict[str, list[int]]:
  rows: dict[str, list[int]] = {}
  for i, face in enumerate(tests.faces):
    rows.setdefault(face.photo_name, []).append(i)
  return rows


def _image_names(tests: sources.TestImages) -> list[str]:
  """Per photo (aligned faces) or per test image: the names animations are written under."""
  return list(_photo_rows(tests)) if tests.faces is not None else list(tests.names)


def output_files(config, tests: sources.TestImages, attributes: Sequence[str]) -> dict:
  """The files `save_outputs` writes (relative to the workdir), by kind."""
  out: dict[str, list[str]] = {}
  if tests.faces is not None:
    rows = _photo_rows(tests)
    out["group_edits"] = [output_names.edit_name(p, a, d, "photos") for p, r in rows.items()
                          if len(r) > 1 for a in attributes for d in config.deltas]
    out["side_by_side"] = [output_names.output_name(p, a, "side_by_side", "photos") for p in rows
                           for a in attributes]
    out["aligned"] = [f"photos/{n}__aligned.png" for n in tests.names]
    out["closeups"] = [output_names.output_name(n, a, "closeup", "photos") for n in tests.names
                       for a in attributes]
  if config.get("animate", ""):
    out["animations"] = [output_names.output_name(n, a, "", "animations", f".{config.animate}")
                         for n in _image_names(tests) for a in attributes]
  return out


def _shrink(image: np.ndarray, side: int = PANEL) -> np.ndarray:
  h, w = image.shape[:2]
  scale = side / max(h, w)
  if scale >= 1:
    return image
  return fitting.resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def closeup_box(tests: sources.TestImages, i: int) -> tuple[int, int, int, int]:
  """Test image i's face region in its photo, a square (top, bottom, left, right) around its
  landmarks grown by `CLOSEUP_MARGIN`, inside the photo."""
  face = tests.faces[i]
  (x0, y0), (x1, y1) = face.points.min(0), face.points.max(0)
  side = max(x1 - x0, y1 - y0) * (1 + 2 * CLOSEUP_MARGIN)
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * (y1 - y0)  # a little forehead
  h, w = tests.originals[i].shape[:2]
  side = int(min(max(side, 8), h, w))
  top = int(np.clip(round(cy - side / 2), 0, h - side))
  left = int(np.clip(round(cx - side / 2), 0, w - side))
  return top, top + side, left, left + side


def save_closeup(path: Path, tests: sources.TestImages, i: int, attribute: str,
                 photos: Sequence[np.ndarray], deltas: Sequence[float]) -> None:
  """Face i close up: its photo's input beside each δ's edited photo (`photos`, full size)."""
  top, bottom, left, right = closeup_box(tests, i)
  panels = [fitting.resize(p[top:bottom, left:right], (CLOSEUP, CLOSEUP))
            for p in [tests.originals[i], *photos]]
  figures.save_grid(path, [panels], col_labels=["input"] + [
      f"{attribute} δ={d:g}" for d in deltas][:len(panels) - 1])


def closeup_rows(config, tests: sources.TestImages, attributes: Sequence[str]) -> dict:
  """Attribute -> index.html rows for own photos: each face close up (input | edits), then each
  full-size edited photo once (a photo with several faces: all of them edited together)."""
  rows_of = _photo_rows(tests)
  out = {}
  for a in attributes:
    rows = [[dict(src=output_names.output_name(n, a, "closeup", "photos"),
                  caption=f"{n}: the face close up, input | δ = "
                          + ", ".join(f"{d:g}" for d in config.deltas))] for n in tests.names]
    full = []
    for photo, members in rows_of.items():
      for d in config.deltas:
        src = (output_names.edit_name(photo, a, d, "photos") if len(members) > 1
               else output_names.edit_name(tests.names[members[0]], a, d))
        full.append(dict(src=src, caption=f"{photo}: {a}, δ = {d:g}", width=PHOTO_WIDTH))
    out[a] = rows + [full]
  return out


def aligned_figure(tests: sources.TestImages, i: int, scale: int = 4) -> np.ndarray:
  """Test image i's crop enlarged `scale`× (nearest) with its 68 landmarks (green) and the
  frame's points it was fitted to (red rings): `[S·scale, S·scale, 3]` uint8."""
  pixels = image_io.to_uint8(tests.images[i])
  size = pixels.shape[0]
  img = Image.fromarray(pixels).resize((size * scale, size * scale), Image.Resampling.NEAREST)
  draw = ImageDraw.Draw(img)
  for x, y in (crop_points(tests.faces[i]) + 0.5) * scale:
    draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(40, 230, 60))
  for x, y in (tests.faces[i].target + 0.5) * scale:
    draw.ellipse((x - 4, y - 4, x + 4, y + 4), outline=(240, 40, 40), width=2)
  return np.asarray(img)


def save_animation(path: str | os.PathLike, frames: Sequence[np.ndarray],
                   duration_ms: int = FRAME_MS) -> None:
  """Writes `[H, W, 3]` float frames as a looping animated GIF or WebP (by the suffix),
  atomically; the sequence plays forwards then back."""
  images = [Image.fromarray(image_io.to_uint8(f)) for f in frames]
  loop = images + images[-2:0:-1]
  kind = Path(path).suffix.lower().lstrip(".")
  buf = io.BytesIO()
  options = dict(lossless=True) if kind == "webp" else dict(optimize=False)
  loop[0].save(buf, format={"gif": "GIF", "webp": "WEBP"}[kind], save_all=True,
               append_images=loop[1:], duration=duration_ms, loop=0, **options)
  files_lib.atomic_write_bytes(path, buf.getvalue())


def save_outputs(workdir: Path, config, tests: sources.TestImages, items, results: np.ndarray,
                 finite: np.ndarray) -> None:
  """Writes `output_files`' files from the run's results.

  Args:
    items: `[(test image index, attribute)]`, the columns of `results`.
    results: `[len(config.deltas), len(items), S, S, 3]`; finite: `[len(deltas), len(items)]`.
  """
  deltas = list(config.deltas)
  attributes = list(dict.fromkeys(a for _, a in items))
  column = {item: j for j, item in enumerate(items)}
  anim = config.get("animate", "")
  if tests.faces is not None:
    files_lib.make_folder(workdir / "photos")
    for i, name in enumerate(tests.names):
      image_io.save_png(workdir / "photos" / f"{name}__aligned.png", aligned_figure(tests, i))
    for photo, rows in _photo_rows(tests).items():
      original = tests.originals[rows[0]]
      for a in attributes:
        sweep = [original]
        for s, d in enumerate(deltas):
          done = [i for i in rows if finite[s, column[(i, a)]]]
          edited = paste(original, [tests.images[i] for i in done],
                         [results[s, column[(i, a)]] for i in done],
                         [tests.faces[i] for i in done])
          if len(rows) > 1:
            image_io.save_png(workdir / output_names.edit_name(photo, a, d, "photos"), edited)
          sweep.append(edited)
        panels = [_shrink(x) for x in sweep]
        figures.save_grid(workdir / output_names.output_name(photo, a, "side_by_side", "photos"),
                          [panels],
                          col_labels=["input"] + [f"{a} δ={d:g}" for d in deltas])
        for i in rows:  # each face close up, in the photo with only that face edited
          done = [s for s in range(len(deltas)) if finite[s, column[(i, a)]]]
          edited = [paste(original, [tests.images[i]], [results[s, column[(i, a)]]],
                          [tests.faces[i]]) for s in done]
          save_closeup(workdir / output_names.output_name(tests.names[i], a, "closeup", "photos"),
                       tests, i, a,
                       edited, [deltas[s] for s in done])
        if anim:
          files_lib.make_folder(workdir / "animations")
          save_animation(
              workdir / output_names.output_name(photo, a, "", "animations", f".{anim}"), panels)
  elif anim:
    files_lib.make_folder(workdir / "animations")
    for i, name in enumerate(tests.names):
      for a in attributes:
        frames = [tests.images[i]] + [results[s, column[(i, a)]] for s in range(len(deltas))
                                      if finite[s, column[(i, a)]]]
        big = [np.repeat(np.repeat(f, 4, 0), 4, 1) for f in frames]  # 64² is hard to see
        save_animation(
            workdir / output_names.output_name(name, a, "", "animations", f".{anim}"), big)


def index_sections(config, tests: sources.TestImages, attributes: Sequence[str]) -> list[dict]:
  """index.html's sections for `output_files`."""
  files = output_files(config, tests, attributes)
  sections = []
  if tests.faces is not None:
    firsts = [rows[0] for rows in _photo_rows(tests).values()]
    sections.append(dict(
        heading="Your photos",
        text=("Each face found was aligned to the bank's landmark frame (its eye centres, nose "
              "tip and mouth corners fitted by a similarity), edited there, and the change "
              "pasted back through a feathered face mask; pixels outside the mask are the "
              "photo's own. The inputs, then each face's aligned crop with its landmarks "
              "(green) and the frame's points it was fitted to (red)."),
        figures=[dict(src=f"originals/{tests.names[i]}.png", caption=f"{tests.faces[i].photo_name}: "
                      "input", width=PHOTO_WIDTH) for i in firsts]
        + [dict(src=f, caption=Path(f).stem.replace("__", " · ")) for f in files["aligned"]]))
  if files.get("animations"):
    sections.append(dict(heading="The δ sweep, animated", figures=[
        dict(src=f, caption=Path(f).stem.replace("__", " · ")) for f in files["animations"]]))
  return sections


def zone_metrics(config, tests: sources.TestImages, items, results: np.ndarray,
                 finite: np.ndarray) -> list[dict]:
  """Per face of an own photo, edit and δ: `photo_zones.scores` of the face pasted back (the
  photo's other faces left as they are); [] without aligned faces.

  Args:
    items: `[(test image index, attribute)]`, the columns of `results`.
    results: `[len(config.deltas), len(items), S, S, 3]`; finite: `[len(deltas), len(items)]`.
  """
  if tests.faces is None:
    return []
  records = []
  for s, d in enumerate(config.deltas):
    for j, (i, a) in enumerate(items):
      if not finite[s, j]:
        continue
      face = tests.faces[i]
      edited = paste(tests.originals[i], [tests.images[i]], [results[s, j]], [face])
      records.append(dict(image=tests.names[i], delta=float(d),
                          **photo_zones.scores(tests.originals[i], edited, face.points, a)))
  return records


def zone_section(records: Sequence[dict]) -> list[dict]:
  """index.html's table of `zone_metrics` (none without records)."""
  if not records:
    return []
  fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
  return [dict(
      heading="How local each photo edit is",
      text=("Mean |change| (0-255) in the edit's zone from the face's 68 landmarks (mouth; "
            "eyes and brows) and in the rest of the face box; local = rest <= "
            f"{photo_zones.REST_MAX:g}, zone >= {photo_zones.RATIO_MIN:g} x rest and >= "
            f"{photo_zones.ZONE_MIN:g}."),
      table=dict(columns=["face", "edit", "δ", "zone", "zone mean", "rest mean",
                          "rest changed > 3/255", "zone / rest", "beyond the face box",
                          "local"],
                 rows=[[r["image"], r["attribute"], f"{r['delta']:g}", r["zone"] or "–",
                        fmt(r["zone_mean"], ".1f"), f"{r['rest_mean']:.1f}",
                        f"{100 * r['rest_changed']:.0f} %", fmt(r["ratio"], ".1f"),
                        f"{r['outside_box_mean']:.2f}",
                        "–" if r["zone"] is None else ("yes" if r["local"] else "no")]
                       for r in records]))]
