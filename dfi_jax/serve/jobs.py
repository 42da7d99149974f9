"""One solve at a time: a queue of edit requests answered in order by one worker thread.

A newer request for the same photo supersedes the older one (dropped while it waits, stopped at
its next progress report while it runs); a request can be cancelled the same way.
"""

from __future__ import annotations

import collections
import itertools
import sys
import threading
import time
import traceback
import uuid
from typing import Any, Callable

# States a page sees; the last four are final.
QUEUED, RUNNING, DONE, ERROR, CANCELLED, SUPERSEDED = (
    "queued", "running", "done", "error", "cancelled", "superseded")
FINAL = (DONE, ERROR, CANCELLED, SUPERSEDED)
KEEP = 200  # finished jobs remembered for their pages


class Stopped(Exception):
  """Raised from a job's progress report once it is cancelled or superseded."""


class Job:
  """One request: what `run(job)` reports (stage, done/total, partial results) and its end."""

  def __init__(self, photo: str, run: Callable[["Job"], Any], user_errors: tuple):
    self.id = uuid.uuid4().hex[:16]
    self.photo = photo
    self.run = run
    self.user_errors = user_errors
    self.state = QUEUED
    self.stage, self.done, self.total = "waiting for the solves before it", 0, 0
    self.stages: list[str] = []  # every stage reported, in order, once each
    self.message = ""
    self.outputs: dict[str, Any] = {}  # filled by `run` as parts are ready
    self.submitted = time.monotonic()
    self.started = self.finished = None
    self.finish_order = None  # 0, 1, … in the order jobs ended
    self.stop_reason = None  # CANCELLED or SUPERSEDED once asked to stop

  def report(self, stage: str, done: int = 0, total: int = 0) -> None:
    """`run`'s progress; raises `Stopped` when the job was asked to stop."""
    if self.stop_reason:
      raise Stopped(self.stop_reason)
    self.stage, self.done, self.total = stage, done, total
    if stage not in self.stages:
      self.stages.append(stage)

  def view(self) -> dict:
    """What the page polls (JSON)."""
    now = time.monotonic()
    return {"id": self.id, "photo": self.photo, "state": self.state, "stage": self.stage,
            "done": self.done, "total": self.total, "stages": list(self.stages),
            "message": self.message,
            "outputs": dict(self.outputs), "finish_order": self.finish_order,
            "elapsed_s": round((self.finished or now) - self.submitted, 2)}


class Queue:
  """Jobs answered one at a time, in the order submitted, by one daemon thread."""

  def __init__(self):
    self._lock = threading.Condition()
    self._pending: collections.deque[Job] = collections.deque()
    self._jobs: dict[str, Job] = {}
    self._running: Job | None = None
    self._ended = itertools.count()
    self._closed = False
    self._thread = threading.Thread(target=self._work, name="dfi-solver", daemon=True)
    self._thread.start()

  def submit(self, photo: str, run: Callable[[Job], Any], user_errors: tuple = ()) -> Job:
    """Queues `run(job)` for `photo`, superseding that photo's earlier jobs; exceptions in
    `user_errors` end the job with their message, any other with a one-line internal error."""
    job = Job(photo, run, user_errors)
    with self._lock:
      for old in list(self._pending) + [self._running]:
        if old is not None and old.photo == photo:
          self._stop(old, SUPERSEDED)
      self._jobs[job.id] = job
      self._pending.append(job)
      self._forget()
      self._lock.notify_all()
    return job

  def cancel(self, job_id: str) -> Job | None:
    with self._lock:
      job = self._jobs.get(job_id)
      if job is not None and job.state not in FINAL:
        self._stop(job, CANCELLED)
      return job

  def get(self, job_id: str) -> Job | None:
    with self._lock:
      return self._jobs.get(job_id)

  def close(self) -> None:
    with self._lock:
      self._closed = True
      for job in list(self._pending) + [self._running]:
        if job is not None:
          self._stop(job, CANCELLED)
      self._lock.notify_all()

  def _stop(self, job: Job, reason: str) -> None:
    job.stop_reason = reason
    if job in self._pending:  # never started: ends now
      self._pending.remove(job)
      self._end(job, reason)

  def _end(self, job: Job, state: str, message: str = "") -> None:
    job.state, job.message = state, message
    job.finished = time.monotonic()
    job.finish_order = next(self._ended)

  def _forget(self) -> None:
    ended = [j for j in self._jobs.values() if j.state in FINAL]
    for job in ended[:max(0, len(ended) - KEEP)]:
      del self._jobs[job.id]

  def _work(self) -> None:
    while True:
      with self._lock:
        while not self._pending and not self._closed:
          self._lock.wait()
        if self._closed:
          return
        job = self._running = self._pending.popleft()
        job.state, job.started = RUNNING, time.monotonic()
      state, message = DONE, ""
      try:
        job.run(job)
      except Stopped as e:
        state = e.args[0]
      except job.user_errors as e:  # pylint: disable=catching-non-exception
        state, message = ERROR, " ".join(str(e).split())
      except Exception as e:  # pylint: disable=broad-except  # the page gets one line, never a trace
        traceback.print_exc(file=sys.stderr)
        state, message = ERROR, f"internal error ({type(e).__name__}); see the server's log"
      with self._lock:
        if state == DONE and job.stop_reason:  # asked to stop after its last report
          state = job.stop_reason
        self._end(job, state, message)
        self._running = None
