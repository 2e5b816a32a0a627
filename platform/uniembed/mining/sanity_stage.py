"""The judge's sanity check in the mine job: measure it on the calibration shards, keep
the verdict (:mod:`uniembed.mining.sanity`).

The verdict is written to ``<output>/sanity.json`` before the rest of the queries are
judged, so a resumed run keeps the decision of the run it continues, and the output says
which scores decided it.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pyarrow.compute as pc

from uniembed import storage
from uniembed.data.schema import AUC
from uniembed.mining.sanity import SanityVerdict
from uniembed.mining.shards import judged_uri

SANITY_FILE = "sanity.json"


def measure(output: str, shards: list[str]) -> tuple[float | None, int]:
    """Mean per-query AUC over the judged rows of ``shards`` and the number of such rows."""
    total, rows = 0.0, 0
    for shard in shards:
        uri = judged_uri(output, shard)
        if not storage.exists(uri):
            continue
        aucs = storage.read_parquet(uri, columns=[AUC])[AUC].drop_null()
        total += float(pc.sum(aucs).as_py() or 0.0)
        rows += len(aucs)
    return (total / rows if rows else None), rows


def read_verdict(output: str) -> SanityVerdict | None:
    """The verdict an earlier run of this output recorded, or None."""
    uri = storage.join(output, SANITY_FILE)
    if not storage.exists(uri):
        return None
    d = json.loads(storage.read_text(uri))
    d["shards"] = tuple(d["shards"])
    return SanityVerdict(**d)


def write_verdict(output: str, verdict: SanityVerdict) -> None:
    """Record ``verdict`` in the output (atomically)."""
    storage.write_text(storage.join(output, SANITY_FILE), json.dumps(asdict(verdict), indent=1))
