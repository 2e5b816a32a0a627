"""Writing a stream of result batches as Parquet shards, with a quarantine side output.

Each batch becomes one shard with a name of its own (``part-<run>-<random>.parquet``),
whatever ids it holds: two batches with the same ids never write the same file. Rows with
an ``error`` go to the quarantine folder; the rest go to the main folder with only the
columns the caller keeps. The task returns one small stats
row per batch, which is all the driver ever collects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from uniembed import storage
from uniembed.data import schema as S

MANIFEST = "_SUCCESS.json"
QUARANTINE_DIR = "quarantine"  # every job's folder of records it could not process


def shard_name(run_id: str = "") -> str:
    """``part-<run_id>-<16 hex>.parquet``: unique per call, whatever the batch holds."""
    prefix = f"{run_id}-" if run_id else ""
    return f"part-{prefix}{uuid.uuid4().hex[:16]}.parquet"


def count_rows(folder: str) -> tuple[int, int]:
    """``(files, rows)`` of the Parquet shards under ``folder`` (from their footers): the
    counts of what was written, not of what the writers reported."""
    files = storage.list_files(folder, suffix=".parquet")
    rows = 0
    for f in files:
        fs, path = storage.filesystem_for(f)
        with fs.open_input_file(path) as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
    return len(files), rows


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
    run_id: str = "",
) -> Callable[[pa.Table], pa.Table]:
    """A Ray Data UDF writing good rows (``project``-ed) and quarantined rows as shards.

    ``stats(batch)`` adds per-batch figures to the returned stats row; ``run_id`` goes
    into the shard names.
    """

    def write(batch: pa.Table) -> pa.Table:
        storage.configure(s3)
        if len(batch) == 0:
            return pa.Table.from_pylist([])
        name = shard_name(run_id)
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
