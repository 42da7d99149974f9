"""The editor page's queue: one solve at a time, in order; newer requests for a photo supersede
older ones; cancel; a user error ends a job with its message, anything else with one line."""

import threading
import time

from dfi_jax.serve import jobs


def _wait(job, timeout=10.0):
  end = time.monotonic() + timeout
  while job.state not in jobs.FINAL:
    assert time.monotonic() < end, f"{job.id} still {job.state}"
    time.sleep(0.01)
  return job


def _blocking(gate: threading.Event, log: list, name: str):
  """A run that reports, waits for `gate`, reports again (where a stop takes effect) and logs."""
  def run(job):
    job.report("started")
    log.append(("start", name))
    assert gate.wait(10)
    job.report("after the gate")
    log.append(("end", name))
    job.outputs["name"] = name
  return run


def _two_jobs(key_a: str, key_b: str):
  """A queue given job "a" then job "b" (both held at the gate), once "a" has started."""
  queue = jobs.Queue()
  log, gate = [], threading.Event()
  first = queue.submit(key_a, _blocking(gate, log, "a"))
  second = queue.submit(key_b, _blocking(gate, log, "b"))
  while not log:
    time.sleep(0.01)
  return queue, log, gate, first, second


def test_jobs_run_one_at_a_time_in_the_order_submitted():
  queue, log, gate, first, second = _two_jobs("photo-a", "photo-b")
  time.sleep(0.1)
  assert log == [("start", "a")] and second.state == jobs.QUEUED  # b waits for a
  gate.set()
  _wait(first), _wait(second)
  assert log == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b")]
  assert (first.state, second.state) == (jobs.DONE, jobs.DONE)
  assert (first.finish_order, second.finish_order) == (0, 1)
  assert second.view()["outputs"] == {"name": "b"}
  queue.close()


def test_a_newer_request_for_the_same_photo_supersedes_the_older_ones():
  queue = jobs.Queue()
  log, gate = [], threading.Event()
  running = queue.submit("photo", _blocking(gate, log, "running"))
  while not log:
    time.sleep(0.01)
  waiting = queue.submit("photo", _blocking(gate, log, "waiting"))
  other = queue.submit("other photo", _blocking(gate, log, "other"))
  newest = queue.submit("photo", _blocking(gate, log, "newest"))
  assert waiting.state == jobs.SUPERSEDED  # dropped without running
  gate.set()
  for job in (running, other, newest):
    _wait(job)
  assert running.state == jobs.SUPERSEDED  # stopped at its next report
  assert (other.state, newest.state) == (jobs.DONE, jobs.DONE)
  assert ("end", "running") not in log and ("start", "waiting") not in log
  assert [e for e in log if e[0] == "end"] == [("end", "other"), ("end", "newest")]
  queue.close()


def test_cancel_stops_a_running_job_and_drops_a_waiting_one():
  queue, log, gate, running, waiting = _two_jobs("a", "b")
  assert queue.cancel(waiting.id).state == jobs.CANCELLED
  queue.cancel(running.id)
  gate.set()
  assert _wait(running).state == jobs.CANCELLED
  assert log == [("start", "a")]
  assert queue.cancel("no such job") is None
  queue.close()


def test_errors_end_the_job_with_one_line():
  queue = jobs.Queue()

  def user_error(job):
    raise ValueError("no face found\n  in the photo")

  def bug(job):
    raise ZeroDivisionError("division by zero")

  told = _wait(queue.submit("a", user_error, (ValueError,)))
  crashed = _wait(queue.submit("b", bug, (ValueError,)))
  assert (told.state, told.message) == (jobs.ERROR, "no face found in the photo")
  assert crashed.state == jobs.ERROR
  assert crashed.message == "internal error (ZeroDivisionError); see the server's log"
  queue.close()
