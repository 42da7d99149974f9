"""The record every run writes (`metrics.json`, research's `fast_mode.json`), built once."""

from __future__ import annotations

import jax

from dfi_jax.base import versions


def run_record(config, network=None, *, timings: dict | None = None, **parts) -> dict:
  """`settings` (the run config), `weights` (the network's file and provenance, when given),
  each of `parts` under its name, `timings` (when given), the package versions and the devices.
  `network`: anything with `.path` and `.provenance` (`runs.kit.Network`)."""
  record = dict(settings=config.to_dict())
  if network is not None:
    record["weights"] = dict(path=network.path, provenance=network.provenance)
  record.update(parts)
  if timings is not None:
    record["timings"] = timings
  record.update(versions=versions.package_versions(), devices=[str(d) for d in jax.devices()])
  return record
