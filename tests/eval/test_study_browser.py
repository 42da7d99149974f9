"""The rating page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Builds a study from a fake run, opens index.html from disk, answers every trial by clicking (and a
few by arrow key) in a known pattern, exports CSV and JSON through the page's download buttons,
analyses them and checks the numbers. Skips, saying so, only when no chromium is installed.
"""

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from dfi_jax.eval.study import analysis
from dfi_jax.eval.study import stimuli
from fake_runs import fake_run

IMAGES = [f"face{i}" for i in range(5)]
# Which images each rater prefers DFI on, per attribute: alice 4/5 older, 1/5 smiling.
ALICE = {"older": {"face0", "face1", "face2", "face3"}, "smiling": {"face4"}}
KEYBOARD_TRIALS = {1, 4}  # alice answers these trial positions with arrow keys


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


def _chromium() -> str:
  for name in ("chromium", "chromium-browser"):
    if shutil.which(name):
      return shutil.which(name)
  pytest.skip("chromium not installed: `apt-get install -y chromium` (Debian) runs this test")


def _side(trial: dict, rater: str) -> str:
  """The side `rater` picks for this manifest trial."""
  flip = {"left": "right", "right": "left"}
  if trial["kind"] == "attention":  # alice looks; bob picks the scrambled one every time
    return trial["correct_side"] if rater == "alice" else flip[trial["correct_side"]]
  if rater == "bob":
    return trial["dfi_side"]
  return trial["dfi_side"] if trial["image"] in ALICE[trial["attribute"]] else flip[
      trial["dfi_side"]]


def _answer(page, manifest, rater, start_at=0, stop_at=None):
  trials = {t["id"]: t for t in manifest["trials"]}
  order = page.evaluate("window.TRIALS.map(t => t.id)")
  assert order == [t["id"] for t in manifest["trials"]]
  n = len(order)
  for i in range(start_at, n if stop_at is None else stop_at):
    assert page.text_content("#progress-text") == f"{i + 1} of {n}"
    t = trials[order[i]]
    page.wait_for_selector("#left:enabled")
    assert page.get_attribute("#left img", "src") == t["left"]
    assert page.get_attribute("#right img", "src") == t["right"]
    assert page.text_content("#prompt") == t["prompt"]
    side = _side(t, rater)
    if rater == "alice" and i in KEYBOARD_TRIALS:
      page.keyboard.press("ArrowLeft" if side == "left" else "ArrowRight")
    else:
      page.click(f"#{side}")
    if i + 1 < n:  # the next trial is up (or the page moved on to "done")
      page.wait_for_selector(f"#progress-text:text-is('{i + 2} of {n}')")


def test_page_in_headless_chromium(tmp_path):
  executable = _chromium()
  try:
    from playwright.sync_api import sync_playwright
  except ImportError:
    pytest.fail("chromium is installed but Playwright is not: pip install playwright "
                "(the test extra); no `playwright install` is needed")

  fake_run(tmp_path / "run", IMAGES, ["older", "smiling"], baseline_dir=tmp_path / "pixel")
  manifest = stimuli.build_study([tmp_path / "run"], tmp_path / "study",
                                 baseline_dirs=[tmp_path / "pixel"], seed=3)
  assert (manifest["num_main_trials"], manifest["num_attention_trials"]) == (10, 3)
  url = (tmp_path / "study" / "index.html").as_uri()
  responses = tmp_path / "responses"
  responses.mkdir()
  errors = []

  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=executable,
                                args=["--no-sandbox", "--disable-dev-shm-usage"])
    try:
      for rater in ("alice", "bob"):
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{url}?rater={rater}")
        assert page.input_value("#rater") == rater
        page.click("#start")
        if rater == "alice":  # a reload mid-way resumes where the rater was
          _answer(page, manifest, rater, stop_at=3)
          page.reload()
          page.click("#start")
          _answer(page, manifest, rater, start_at=3)
        else:
          _answer(page, manifest, rater)
        page.wait_for_selector("#done:not([hidden])")
        for button in ("#export-csv", "#export-json"):
          with page.expect_download() as download:
            page.click(button)
          name = download.value.suggested_filename
          assert name.startswith(f"responses_{manifest['study_id']}_s0_{rater}.")
          download.value.save_as(responses / name)
        exported = json.loads(page.evaluate("window.exportResponses()"))
        saved = json.loads((responses / name).read_text())
        assert exported["responses"] == saved["responses"]
        assert [r["order"] for r in saved["responses"]] == list(range(13))
        assert all(r["rt_ms"] > 0 for r in saved["responses"])
        inputs = [r["input"] for r in saved["responses"]]
        assert inputs.count("key") == (len(KEYBOARD_TRIALS) if rater == "alice" else 0)
        context.close()
      # The same folder served by a static server (as `python -m http.server` would) works too.
      handler = functools.partial(_QuietHandler, directory=str(tmp_path / "study"))
      with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html?rater=carol")
        page.click("#start")
        _answer(page, manifest, "alice", stop_at=2)
        page.close()
        server.shutdown()
    finally:
      browser.close()
  assert errors == []

  rows = []
  for f in analysis.response_files([responses]):
    rows += analysis.read_responses(f)
  assert len(rows) == 4 * 13  # two raters, CSV and JSON each
  result = analysis.analyse(analysis.load_study([tmp_path / "study"]), rows)
  assert result["responses"]["duplicates"] == 2 * 13
  assert {k: result["raters"][k] for k in ("total", "kept", "dropped")} == dict(
      total=2, kept=1, dropped=1)
  bob = next(r for r in result["raters"]["per_rater"] if r["rater"] == "bob")
  assert bob["attention_accuracy"] == 0.0 and not bob["kept"]
  by_attribute = {e["attribute"]: e for e in result["edits"]}
  assert (by_attribute["older"]["n"], by_attribute["older"]["dfi"]) == (5, 4)
  assert by_attribute["older"]["ratio"] == 4.0
  assert (by_attribute["smiling"]["n"], by_attribute["smiling"]["dfi"]) == (5, 1)
  assert by_attribute["smiling"]["ratio"] == 0.25
  assert result["overall"][0]["dfi"] == 5 and result["overall"][0]["ratio"] == 1.0
  paths = analysis.write(result, tmp_path / "analysis")
  assert "| older | pixel | 1 | 5 | 4 | 4.00 [" in Path(paths["markdown"]).read_text()
