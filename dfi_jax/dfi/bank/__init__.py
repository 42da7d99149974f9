"""The feature bank on disk: φ of a whole dataset, built in streamed chunks, stored in shards.

Layout of a bank directory (format `dfi_jax-bank-v1`):

  bank.json                     the manifest: settings, φ layout, attribute names, edits, shard
                                table; `complete` once every shard is on disk
  shards/00012.phi.npy          `[n, D]` φ rows of shard 12: float32, or bfloat16 stored as its
                                uint16 bit pattern (NumPy has no bfloat16; the manifest says so)
  shards/00012.search.npy       `[n, d]` float32 search reduction (absent for `search="none"`)
  shards/00012.attributes.npy   `[n, A]` bool
  shards/00012.group.npy        `[n]` int32 neighbour group (LFW's gender), when the data has one
  shards/00012.json             the shard's done marker (rows, image names), written last

Why `.npy` shards and a JSON manifest rather than tensorstore/zarr (installed with orbax): every
shard is an ordinary file written to a temp name and renamed, so "finished" is simply "its
marker exists" and an interrupted build resumes at the first missing shard; `np.load(...,
mmap_mode="r")` maps a shard without reading it, so gathering K neighbour rows touches only
those rows' pages; hosts of a pod write disjoint shards with no coordination beyond one final
barrier; and any NumPy reads the result. Zarr would add chunk-level writes we do not need (a
shard is written once, whole) and a dependency on the orbax stack's versions.

Peak memory does not grow with the dataset: images are read `batch` at a time, φ goes straight
into the shard's memory-mapped temp file, and nothing of a finished shard is kept. A run that
needs only neighbour *means* never loads φ: neighbours are searched in the (small) search table,
and `attribute_vector` streams just the chosen rows shard by shard into a `[B, D]` accumulator.

The package: `layout` (names, format), `search` (the search reduction), `streams` (the
images, a range at a time), `build` and `read`.
"""

from dfi_jax.dfi.bank.layout import DTYPES, FORMAT, MANIFEST, BankError
from dfi_jax.dfi.bank.search import (
    SEARCH_KINDS, SearchReduction, parse_search, reduce_for_search, search_dim)
from dfi_jax.dfi.bank.streams import ImageStream, Rows, synthetic_stream
from dfi_jax.dfi.bank.build import BuildReport, Hosts, build
from dfi_jax.dfi.bank.read import (
    DiskBank, attribute_vector, open_bank, read_manifest, read_phi, read_rows, read_search,
    shard_phi)

__all__ = ["BankError", "BuildReport", "DTYPES", "DiskBank", "FORMAT", "Hosts", "ImageStream",
           "MANIFEST", "Rows", "SEARCH_KINDS", "SearchReduction", "attribute_vector", "build",
           "open_bank", "parse_search", "read_manifest", "read_phi", "read_rows", "read_search",
           "reduce_for_search", "search_dim", "shard_phi", "synthetic_stream"]
