"""The page's server path gives the PNG `dfi_jax.edit` gives for the same photo and settings
(tiny config), and the advanced settings reach the edit."""

import time

import numpy as np
from PIL import Image
import pytest

from dfi_jax.data import image_io
from dfi_jax.runs import api
from dfi_jax.serve import jobs
from dfi_jax.serve import service as service_lib
from experiments.configs import synthetic


def _done(job, timeout=600.0):
  end = time.monotonic() + timeout
  while job.state not in jobs.FINAL:
    assert time.monotonic() < end, job.view()
    time.sleep(0.02)
  assert job.state == jobs.DONE, job.view()
  return job


def test_the_page_gives_the_apis_png_for_the_same_photo_and_settings():
  from skimage import data  # the photos extra, which the test extra includes
  service = service_lib.Service(synthetic.get_config("tiny"), 10_000_000, sweep=False)
  try:
    photo = service.add_sample("astronaut")
    results = {}
    for settings in ({}, {"delta": 0.8, "iterations": 6}):
      job = _done(service.submit({"photo": photo["id"], "attributes": ["moustache"],
                                  "target": 0, **settings}))
      png = service.file(job.outputs["result"].rsplit("/", 1)[1])
      results[tuple(settings)] = np.asarray(Image.open(png))
    expected = api.edit(data.astronaut(), "moustache", deltas=0.4, editor=service.editor,
                        face=0, progress=lambda *unused: None)["moustache"][0]
    assert results[()].tolist() == image_io.to_uint8(expected).tolist()
    config = synthetic.get_config("tiny")
    config.iterations = 6
    config.next_iterations = 3
    stronger = api.edit(data.astronaut(), "moustache", deltas=0.8,
                        editor=service.editor._replace(config=config), face=0,
                        progress=lambda *unused: None)["moustache"][0]
    assert results[("delta", "iterations")].tolist() == image_io.to_uint8(stronger).tolist()
    assert results[()].tolist() != results[("delta", "iterations")].tolist()
    with pytest.raises(service_lib.BadRequest, match=r"^iterations: 0; expected an integer in "):
      service.submit({"photo": photo["id"], "attributes": ["moustache"], "iterations": 0})
  finally:
    service.close()


def test_cancel_stops_a_solve_in_the_middle_of_its_iterations():
  service = service_lib.Service(synthetic.get_config("tiny"), 10_000_000, sweep=False)
  try:
    photo = service.add_sample("astronaut")
    job = service.submit({"photo": photo["id"], "attributes": ["older"], "iterations": 5000})
    end = time.monotonic() + 600
    while not (job.stage.startswith("reverse map") and 0 < job.done < job.total):
      assert time.monotonic() < end and job.state not in jobs.FINAL, job.view()
      time.sleep(0.01)
    service.queue.cancel(job.id)
    stopped = time.monotonic()
    while job.state not in jobs.FINAL:
      assert time.monotonic() - stopped < 60, job.view()
      time.sleep(0.01)
    assert job.state == jobs.CANCELLED and job.done < job.total
    assert "result" not in job.outputs
  finally:
    service.close()
