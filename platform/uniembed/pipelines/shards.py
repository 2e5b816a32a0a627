"""Writing a stream of result batches as Parquet shards, with a quarantine side output.

Each batch becomes one shard named from a hash of its ids, so a rerun over the same input
writes the same names. Rows with an ``error`` go to the quarantine folder; the rest go to
the main folder with only the columns the caller keeps. The task returns one small stats
row per batch, which is all the driver ever collects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from uniembed import storage
from uniembed.data import schema as S

MANIFEST = "_SUCCESS.json"


def shard_name(ids: Sequence[str]) -> str:
    """``part-<16 hex>.parquet`` from the ids of a batch (stable across reruns)."""
    h = hashlib.sha1()
    for i in ids:
        h.update(str(i).encode())
        h.update(b"\0")
    return f"part-{h.hexdigest()[:16]}.parquet"


def quarantine_table(batch: pa.Table) -> pa.Table:
    """The quarantine rows (id, stage, reason, source) of a batch's failed rows."""
    bad = batch.filter(pc.invert(pc.is_null(batch[S.ERROR])))
    stage = bad[S.STAGE] if S.STAGE in bad.column_names else pa.nulls(len(bad), pa.string())
    return pa.table(
        {S.ID: bad[S.ID], S.STAGE: stage, S.REASON: bad[S.ERROR], S.SOURCE: bad[S.SOURCE]},
        schema=S.QUARANTINE_SCHEMA,
    )


def shard_writer(
    out_dir: str,
    quarantine_dir: str,
    project: Callable[[pa.Table], pa.Table],
    stats: Callable[[pa.Table], dict[str, Any]],
    s3: storage.S3Options,
) -> Callable[[pa.Table], pa.Table]:
    """A Ray Data UDF writing good rows (``project``-ed) and quarantined rows as shards.

    ``stats(batch)`` adds per-batch figures to the returned stats row.
    """

    def write(batch: pa.Table) -> pa.Table:
        storage.configure(s3)
        if len(batch) == 0:
            return pa.Table.from_pylist([])
        name = shard_name(batch[S.ID].to_pylist())
        ok_mask = pc.is_null(batch[S.ERROR])
        good = batch.filter(ok_mask)
        bad = quarantine_table(batch)
        if len(good):
            storage.write_parquet(storage.join(out_dir, name), project(good))
        if len(bad):
            storage.write_parquet(storage.join(quarantine_dir, name), bad)
        row = {"shard": name, "rows": len(batch), "ok": len(good), "quarantined": len(bad)}
        row.update(stats(batch))
        return pa.Table.from_pylist([row])

    return write


def write_manifest(out_uri: str, summary: dict[str, Any]) -> None:
    """Mark an output complete: written last, so its presence means every shard is there."""
    storage.write_text(storage.join(out_uri, MANIFEST), json.dumps(summary, indent=2) + "\n")


def read_manifest(out_uri: str) -> dict[str, Any] | None:
    """The manifest of a finished output, or None when the output is absent or unfinished."""
    uri = storage.join(out_uri, MANIFEST)
    if not storage.exists(uri):
        return None
    return json.loads(storage.read_text(uri))
