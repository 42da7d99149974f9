"""A bank directory's names and format: the manifest, the shard files, `BankError`."""

from __future__ import annotations

from pathlib import Path


FORMAT = "dfi_jax-bank-v1"
DTYPES = ("float32", "bfloat16")
MANIFEST = "bank.json"


class BankError(ValueError):
  """A bank directory that is missing, incomplete, or built with other settings."""


def shard_paths(path: Path, i: int) -> dict[str, Path]:
  stem = path / "shards" / f"{i:05d}"
  return {k: Path(f"{stem}.{k}.npy") for k in ("phi", "search", "attributes", "group")} | {
      "marker": Path(f"{stem}.json")}
