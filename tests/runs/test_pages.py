"""The pages a run writes (report.py, photo_outputs.py, figures.py), read in headless Chromium:
each edit beside its input at a readable size, the table explained, δ written as δ, a face
close-up and each full-size photo once, the judge's note, an animated sweep of several δ."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dfi_jax.outputs import figures
from dfi_jax.runs import edit as edit_run
from experiments.configs import synthetic

skimage_data = pytest.importorskip("skimage.data", reason="the test extra installs scikit-image")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
  folder = tmp_path_factory.mktemp("pages")
  Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.png")
  config = synthetic.get_config("tiny")
  config.update(judge="default", neighbours="attributes", animate="gif")
  edit_run.run(config, folder / "run", [str(folder / "astronaut.png")], ["eyes_open", "smiling"])
  return folder / "run"


def _page(path: Path, screenshot: Path | None = None) -> dict:
  """What Chromium shows of `path`: per figure row, its images' src and rendered width."""
  from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM,
                                args=["--no-sandbox", "--disable-dev-shm-usage"])
    try:
      page = browser.new_page(viewport={"width": 1200, "height": 900})
      page.goto(path.as_uri())
      page.wait_for_load_state("load")
      seen = page.evaluate("""() => ({
        rows: [...document.querySelectorAll('.figs')].map(d => [...d.querySelectorAll('img')]
              .map(i => ({src: i.getAttribute('src'), width: i.getBoundingClientRect().width,
                          loaded: i.complete && i.naturalWidth > 0}))),
        captions: [...document.querySelectorAll('figcaption')].map(c => c.textContent),
        headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
        notes: [...document.querySelectorAll('.note')].map(n => n.textContent),
        explained: [...document.querySelectorAll('dt')].map(n => n.textContent),
        columns: [...document.querySelectorAll('th')].map(n => n.textContent)})""")
      if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
      return seen
    finally:
      browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
def test_the_photo_page_shows_each_edit_beside_its_input(photo_run, tmp_path):
  seen = _page(photo_run / "index.html", tmp_path / "page.png")
  images = [img for row in seen["rows"] for img in row]
  assert all(img["loaded"] for img in images)
  for attribute in ("eyes_open", "smiling"):
    closeup = [r for r in seen["rows"] if any(f"{attribute}__closeup" in i["src"] for i in r)]
    assert closeup and closeup[0][0]["width"] >= 512  # input | δ 0.4 | δ 0.8 at 256 px each
    strip = np.asarray(Image.open(photo_run / closeup[0][0]["src"]))
    assert strip.shape[1] >= 3 * 256
  full = [i["src"] for i in images if i["src"].startswith(("edits/", "originals/"))]
  assert len(full) == len(set(full))  # each full-size photo once
  assert sorted(full) == sorted(["originals/astronaut.png"] + [
      f"edits/astronaut__{a}__d{d}.png" for a in ("eyes_open", "smiling") for d in ("0.4", "0.8")])
  assert all(i["width"] >= 300 for i in images if i["src"] in full)
  assert any("δ = 0.4" in c for c in seen["captions"])
  assert not any("d=" in c for c in seen["captions"])
  # The tiny judge sees eyes_open on the astronaut (the command prints it): a one-line note.
  assert seen["notes"] == ["The judge says astronaut already has eyes_open: adding it changes "
                           "little."]


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
def test_the_generated_faces_page_explains_its_table_and_enlarges_edits(tmp_path):
  config = synthetic.get_config("tiny")
  config.update(num_test=1)
  edit_run.run(config, tmp_path / "run", [], ["smiling", "eyeglasses"])
  seen = _page(tmp_path / "run" / "index.html", tmp_path / "page.png")
  assert "Quality at δ = 0.4 (counterfactual benchmark)" in seen["headings"]
  assert seen["explained"][:len(set(seen["columns"]))] == list(dict.fromkeys(seen["columns"]))
  for attribute in ("smiling", "eyeglasses"):
    row, = [r for r in seen["rows"] if any(f"__{attribute}__" in i["src"] for i in r)]
    assert row[0]["src"].startswith("originals/")  # the input first, then each δ
    assert [i["src"].rsplit("__", 1)[-1] for i in row[1:]] == ["d0.4.png", "d0.8.png"]
    assert all(i["width"] >= 3 * 32 * 2 for i in row)  # 32² shown at 192 px (6x)
  grid = Image.open(tmp_path / "run" / "grid.png")
  assert grid.width >= 5 * 192  # input + 2 edits x 2 δ + 2 counterfactuals, tiles >= 192 px


def test_grid_labels_wrap_and_are_never_cut():
  font, _ = figures._font()
  draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  for text in ("true eyeglasses", "mouth_open δ=0.4", "older+eyeglasses δ=3",
               "averyveryveryverylongwordwithoutanybreaks"):
    for width in (64, 96, 192):
      lines = figures._wrap(draw, font, text, width)
      assert "".join(lines).replace(" ", "") == text.replace(" ", "")
      assert all(draw.textbbox((0, 0), l, font=font)[2] <= width for l in lines)


def test_the_animation_sweeps_every_delta(photo_run):
  gif = Image.open(photo_run / "animations" / "astronaut__smiling.gif")
  assert gif.n_frames >= 4  # input, δ 0.4, δ 0.8, then back
