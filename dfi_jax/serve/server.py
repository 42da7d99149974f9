"""The page's HTTP server (Python's own `http.server`, one thread per request; docs/serve.md says
why not Gradio or an ASGI app). Serves the page's three files and the JSON API of `Service`;
every response forbids loading anything from another origin.

  GET  /                       the page (dfi_jax/serve/page/)
  GET  /api/info               attributes, defaults, upload limit, loading state
  POST /api/photos             body: the image file's bytes (header X-Filename: its name)
  POST /api/samples/NAME       astronaut | generated
  POST /api/edits              JSON (Service.submit) -> the job
  GET  /api/jobs/ID            the job's state, stage, progress and outputs
  POST /api/jobs/ID/cancel
  GET  /files/TOKEN            a PNG the server made
"""

from __future__ import annotations

import http.server
import json
import re
import sys
import traceback
import urllib.parse
from pathlib import Path

from dfi_jax.serve import service as service_lib

PAGE = Path(__file__).resolve().parent / "page"
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/page/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/page/style.css": ("style.css", "text/css; charset=utf-8")}
# Nothing from another origin: no CDN, no fonts, no analytics.
POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
          "connect-src 'self'; frame-ancestors 'none'")
MAX_JSON = 64 * 1024
DRAIN = 256 * 1024 * 1024  # an over-limit upload up to this size is read and dropped, not cut


class Handler(http.server.BaseHTTPRequestHandler):
  """One request; `server.service` is the app's `Service`."""
  server_version = "dfi-serve"

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    pass  # the page polls several times a second

  def _send(self, status: int, body: bytes, content_type: str) -> None:
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Content-Security-Policy", POLICY)
    self.send_header("X-Content-Type-Options", "nosniff")
    self.send_header("Cache-Control", "no-store")
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(body)

  def _json(self, obj, status: int = 200) -> None:
    self._send(status, json.dumps(obj).encode(), "application/json")

  def _error(self, message: str, status: int) -> None:
    self._json({"error": message}, status)

  def _body(self, limit: int) -> bytes:
    length = self.headers.get("Content-Length")
    if length is None or not length.isdigit():
      raise service_lib.BadRequest("the request has no Content-Length", 411)
    size = int(length)
    if size > limit:
      if size <= DRAIN:  # read it, so the client sees the answer rather than a reset
        while size > 0:
          chunk = self.rfile.read(min(size, 1 << 20))
          if not chunk:
            break
          size -= len(chunk)
      self.close_connection = True
      raise service_lib.BadRequest(service_lib.too_large(int(length), limit), 413)
    return self.rfile.read(size)

  def _handle(self, method: str) -> None:
    service = self.server.service
    path = urllib.parse.urlsplit(self.path).path
    try:
      if method == "GET" and path in ASSETS:
        name, kind = ASSETS[path]
        return self._send(200, (PAGE / name).read_bytes(), kind)
      if method == "GET" and path == "/api/info":
        return self._json(service.info())
      if method == "POST" and path == "/api/photos":
        data = self._body(service.max_upload_bytes)
        name = urllib.parse.unquote(self.headers.get("X-Filename", ""))
        return self._json(service.add_upload(data, name))
      found = re.fullmatch(r"/api/samples/(\w+)", path)
      if method == "POST" and found:
        self._body(MAX_JSON)
        return self._json(service.add_sample(found.group(1)))
      if method == "POST" and path == "/api/edits":
        try:
          request = json.loads(self._body(MAX_JSON) or b"null")
        except ValueError:
          raise service_lib.BadRequest("the edit request is not JSON") from None
        if not isinstance(request, dict):
          raise service_lib.BadRequest("the edit request is not a JSON object")
        return self._json(service.submit(request).view())
      found = re.fullmatch(r"/api/jobs/(\w+)(/cancel)?", path)
      if found and (method == "POST") == bool(found.group(2)):
        if found.group(2):
          self._body(MAX_JSON)
        job = (service.queue.cancel if found.group(2) else service.queue.get)(found.group(1))
        if job is None:
          raise service_lib.BadRequest("no such edit (the server forgets old ones)", 404)
        return self._json(job.view())
      found = re.fullmatch(r"/files/(\w+)", path)
      if method == "GET" and found and service.file(found.group(1)) is not None:
        return self._send(200, service.file(found.group(1)).read_bytes(), "image/png")
      raise service_lib.BadRequest(f"nothing at {method} {path}", 404)
    except service_lib.BadRequest as e:
      self._error(str(e), e.status)
    except (BrokenPipeError, ConnectionResetError):
      pass  # the page went away
    except Exception as e:  # pylint: disable=broad-except  # one line on the page, the trace here
      traceback.print_exc(file=sys.stderr)
      self._error(f"internal error ({type(e).__name__}); see the server's log", 500)

  def do_GET(self):  # pylint: disable=invalid-name
    self._handle("GET")

  def do_HEAD(self):  # pylint: disable=invalid-name
    self._handle("GET")

  def do_POST(self):  # pylint: disable=invalid-name
    self._handle("POST")


class Server(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def __init__(self, address: tuple[str, int], service: service_lib.Service):
    super().__init__(address, Handler)
    self.service = service

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f"http://{host}:{port}/"
