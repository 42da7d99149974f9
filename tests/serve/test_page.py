"""The editor page in a real headless Chromium (Debian's `chromium`, driven by Playwright) against
the real server and editor on the tiny config (random weights): the astronaut gets a moustache
inside her face only; bad files get the page's message; requests are answered in order, a newer
one supersedes, cancel works; the server refuses an over-limit upload and any path.
Skips, saying so, only when no chromium is installed.
"""

import io
import shutil
import socket
import threading
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from dfi_jax.serve import server as server_lib
from dfi_jax.serve import service as service_lib
from experiments.configs import synthetic

LIMIT = 2_000_000  # bytes: the astronaut's PNG (~0.5 MB) fits
SOLVE_MS = 600_000  # a tiny edit on a 2-core machine at load 10+, compile included


def _chromium() -> str:
  for name in ("chromium", "chromium-browser"):
    if shutil.which(name):
      return shutil.which(name)
  pytest.skip("chromium not installed: `apt-get install -y chromium` (Debian) runs this test")


@pytest.fixture(scope="module")
def app():
  service = service_lib.Service(synthetic.get_config("tiny"), LIMIT, sweep=True)
  server = server_lib.Server(("127.0.0.1", 0), service)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield server
  server.shutdown()
  server.server_close()
  service.close()
  assert not service.folder.exists()


@pytest.fixture(scope="module")
def browser():
  executable = _chromium()
  try:
    from playwright.sync_api import sync_playwright
  except ImportError:
    pytest.fail("chromium is installed but Playwright is not: pip install playwright "
                "(the test extra); no `playwright install` is needed")
  with sync_playwright() as p:
    chromium = p.chromium.launch(executable_path=executable,
                                 args=["--no-sandbox", "--disable-dev-shm-usage"])
    yield chromium
    chromium.close()


@pytest.fixture
def page(app, browser):
  context = browser.new_context(accept_downloads=True)
  page = context.new_page()
  errors, outside = [], []
  page.on("pageerror", lambda e: errors.append(str(e)))
  page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(app.url) else None)
  page.goto(app.url)
  page.wait_for_selector("#attributes input")
  yield page
  context.close()
  assert errors == []
  assert outside == []  # nothing loaded from anywhere but the app


def _image(page, url: str) -> np.ndarray:
  response = page.request.get(urllib.parse.urljoin(page.url, url))
  assert response.ok
  return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


def _until(page, expression: str, timeout_ms: int):
  """`expression`'s value once truthy (page.wait_for_function would need eval, which the page's
  Content-Security-Policy forbids)."""
  end = time.monotonic() + timeout_ms / 1000
  while not (value := page.evaluate(expression)):
    assert time.monotonic() < end, f"not true within {timeout_ms} ms: {expression}"
    page.wait_for_timeout(20)
  return value


def _job(page) -> dict:
  return page.evaluate("state.job")


def _edit(page, attributes, target=None):
  for name in attributes:
    page.check(f"#attributes input[value={name}]")
  if target is not None:
    page.check(f"#targets input[value={target}]")
  page.click("#edit")


def test_the_astronaut_gets_a_moustache_inside_her_face_only(page, tmp_path):
  from skimage import data  # the photos extra, which the test extra includes
  page.click("#astronaut")
  page.wait_for_selector("#boxes rect.picked")
  box = [float(page.get_attribute("#boxes rect", k)) for k in ("x", "y", "width", "height")]
  assert page.locator("#boxes rect").count() == 1
  assert page.input_value("#k") == "5" and "default 5" in page.text_content("#k-default")
  _edit(page, ["moustache"])
  # The server's own progress (not the page's "sending") within a second of the click.
  _until(page, "/^(queued|running): (?!sending)/.test("
         "document.querySelector('#progress-text').textContent)", 1000)
  page.wait_for_selector("#result-figure:not([hidden])", timeout=SOLVE_MS)
  # The page's "after" image: when the δ sweep arrives with the result (a fast solve), the sweep
  # plays at once and #result's src is already its first frame, the input itself.
  result = _image(page, page.get_attribute("#result", "data-after"))
  astronaut = data.astronaut()
  assert result.shape == astronaut.shape  # full size
  changed = np.abs(result.astype(int) - astronaut).max(-1) > 1
  assert changed.sum() > 100  # the edit did something
  ys, xs = np.nonzero(changed)
  cx, cy, w, h = box[0] + box[2] / 2, box[1] + box[3] / 2, box[2], box[3]
  # Inside the face: the aligned crop reaches past the detector's box (hair, chin), not beyond
  # twice its size; everything else is the input.
  assert np.all(np.abs(xs - cx) <= w) and np.all(np.abs(ys - cy) <= h)
  assert changed[:, :int(cx - w)].sum() == 0 and changed[int(cy + h):].sum() == 0

  page.click("#toggle")  # before/after
  assert _image(page, page.get_attribute("#result", "src")).tolist() == astronaut.tolist()
  page.click("#toggle")
  with page.expect_download() as download:
    page.click("#download")
  assert download.value.suggested_filename == "astronaut_moustache_d0.4.png"
  download.value.save_as(tmp_path / "download.png")
  assert np.asarray(Image.open(tmp_path / "download.png")).tolist() == result.tolist()

  page.wait_for_selector("#play:not([hidden])", timeout=SOLVE_MS)  # the δ sweep is ready
  if page.text_content("#play") != "Stop":  # it auto-plays, but if it arrived before the clicks
    page.click("#play")  # above, before/after stopped it: play it with the button
  page.wait_for_selector("#result-label:has-text('δ sweep: δ = 0.133')", timeout=20_000)
  assert [f["delta"] for f in _job(page)["outputs"]["sweep"]] == pytest.approx(
      [0, 0.4 / 3, 0.8 / 3, 0.4])


def test_bad_files_get_the_pages_message(page, tmp_path):
  text = tmp_path / "notes.png"
  text.write_text("not an image at all\n")
  page.set_input_files("#file", str(text))
  page.wait_for_selector("#message:not([hidden])")
  assert page.text_content("#message") == (
      "notes.png: not an image Pillow can identify; expected an image file")

  big = tmp_path / "big.png"
  big.write_bytes(b"\0" * (LIMIT + 1))
  page.set_input_files("#file", str(big))
  page.wait_for_selector("#message:has-text('upload limit of 2 MB')")

  grey = tmp_path / "grey.png"
  Image.new("RGB", (96, 64), (128, 128, 128)).save(grey)
  page.set_input_files("#file", str(grey))
  page.wait_for_selector("#no-face")  # no face: the whole image is offered, and picked
  assert page.text_content("#no-face") == "No face found in this photo."
  assert page.is_checked("#targets input[value=whole]")
  assert page.is_hidden("#message")


def test_the_server_refuses_an_upload_over_the_limit_and_any_path(app, page):
  response = page.request.post(f"{app.url}api/photos", data=b"\x89PNG" + b"\0" * LIMIT,
                               headers={"X-Filename": "huge.png"})
  assert response.status == 413
  assert response.json()["error"] == ("the file is 2.0 MB, over this server's upload limit of "
                                      "2 MB (serve --max_upload_mb)")
  # Refused from its Content-Length alone, before a byte of the body is read.
  with socket.create_connection(app.server_address[:2], timeout=30) as raw:
    raw.sendall(b"POST /api/photos HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.0 413 ")
  folder = app.service.folder
  before = sorted(p.name for p in folder.iterdir())
  for url in ("files/..%2F..%2Fetc%2Fpasswd", "files/../../etc/passwd", "page/../server.py",
              "api/jobs/..%2Fx"):
    assert page.request.get(app.url + url).status == 404
  response = page.request.post(f"{app.url}api/photos", data=b"GIF89a",
                               headers={"X-Filename": "..%2F..%2Fescape.gif"})
  assert response.status == 400 and response.json()["error"].startswith("../../escape.gif: ")
  assert sorted(p.name for p in folder.iterdir()) == before
  assert not (folder.parent / "escape.gif").exists()
  bomb = io.BytesIO()
  Image.new("1", (12_000, 12_000)).save(bomb, "PNG")  # 144 MP in a few KB
  response = page.request.post(f"{app.url}api/photos", data=bomb.getvalue(),
                               headers={"X-Filename": "bomb.png"})
  assert response.status == 400 and "decompression bomb" in response.json()["error"]
  large = io.BytesIO()
  Image.new("RGB", (6000, 5000), (90, 120, 150)).save(large, "PNG", compress_level=1)
  response = page.request.post(f"{app.url}api/photos", data=large.getvalue(),
                               headers={"X-Filename": "wall.png"})
  assert response.status == 400 and response.json()["error"] == (
      "wall.png is 6000×5000 (30.0 megapixels), over this page's limit of 25 megapixels; shrink "
      "it first")
  photo = page.request.post(f"{app.url}api/samples/astronaut").json()
  response = page.request.post(f"{app.url}api/edits",
                               data={"photo": photo["id"], "attributes": ["beard"]})
  assert response.status == 400
  assert response.json()["error"].startswith("the bank has no attribute 'beard'; it has older")


def test_two_requests_are_answered_in_order_a_newer_one_supersedes_and_cancel_works(
    app, browser, page):
  other = browser.new_page()
  other.goto(app.url)
  other.wait_for_selector("#attributes input")
  page.click("#astronaut")
  other.click("#generated")
  page.wait_for_selector("#boxes rect.picked")
  other.wait_for_selector("#targets input[value=whole]")
  _edit(page, ["smiling"])
  _edit(other, ["older", "eyeglasses"], target="whole")  # one combined edit
  for p in (page, other):
    p.wait_for_selector("#progress-text:has-text('Done in')", timeout=2 * SOLVE_MS)
  first, second = _job(page), _job(other)
  assert (first["state"], second["state"]) == ("done", "done")
  assert first["finish_order"] < second["finish_order"]
  assert first["outputs"]["download"] == "astronaut_smiling_d0.4.png"
  assert second["outputs"]["download"].endswith("_older+eyeglasses_d0.4.png")
  assert other.get_attribute("#result-label", "data-after") == (
      "Result: older + eyeglasses at δ = 0.4")
  assert "reverse map (iterations)" in first["stages"]  # the API's own progress, forwarded

  page.click("#edit")  # the same photo twice: the second supersedes the first
  superseded = _until(page, "state.job && state.job.state === 'running' && state.job.id", 5000)
  page.click("#edit")
  page.wait_for_selector("#cancel:not([hidden])")
  page.click("#cancel")
  page.wait_for_selector("#progress-text:text-is('Cancelled.')", timeout=SOLVE_MS)
  assert _job(page)["state"] == "cancelled"
  for _ in range(SOLVE_MS // 100):  # the superseded solve stops at its next progress report
    state = page.request.get(f"{app.url}api/jobs/{superseded}").json()["state"]
    if state != "running":
      break
    page.wait_for_timeout(100)
  assert state == "superseded"
  assert page.is_hidden("#result-figure") or page.get_attribute(
      "#result-figure", "data-job") not in (superseded, _job(page)["id"])
  other.close()
