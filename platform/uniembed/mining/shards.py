"""The judged-shard writer: an actor that collects each shard's rows and writes it whole.

Rows reach the end of the pipeline in any order and any batching, so the writer buffers
them per shard until all ``shard_rows`` rows of the shard have arrived, then writes

    quarantine/<shard>.parquet   the shard's failed rows (id, stage, reason, source)
    judged/<shard>.parquet       the rest, sorted by ordinal (always written, maybe empty)

in that order, each atomically: a judged shard that exists is complete, and is what a
rerun skips. One writer actor, so no two processes write one shard.
"""

from __future__ import annotations

import warnings

import pyarrow as pa
import pyarrow.compute as pc
import ray

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.shards import QUARANTINE_DIR, quarantine_table
from uniembed.mining.columns import judge_fields, retrieval_fields
from uniembed.mining.inputs import QUERY_SCHEMA

JUDGED_DIR = "judged"
STATS_SCHEMA = pa.schema(
    [pa.field(S.SHARD, pa.string()), pa.field("rows", pa.int64()), pa.field("ok", pa.int64())]
)


def judged_schema() -> pa.Schema:
    """Columns of a judged shard: the query row, retrieval and judge results."""
    query = [f for f in QUERY_SCHEMA if f.name not in (S.IMAGE, S.ERROR)]
    return pa.schema(
        [*query, pa.field(S.EMBED_S, pa.float64()), *retrieval_fields(), *judge_fields()]
    )


def judged_uri(work: str, shard: str) -> str:
    """Where the judged rows of ``shard`` live."""
    return storage.join(work, JUDGED_DIR, f"{shard}.parquet")


def finished_shards(work: str) -> frozenset[str]:
    """Names of the shards whose judged file exists (written last, so complete)."""
    files = storage.list_files(storage.join(work, JUDGED_DIR), suffix=".parquet")
    return frozenset(f.rsplit("/", 1)[-1].removesuffix(".parquet") for f in files)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: missing ones null, types cast."""
    cols = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)


def _restarted_actor() -> bool:
    """True inside a Ray actor that Ray has restarted (False outside actors)."""
    if not ray.is_initialized():
        return False
    ctx = ray.get_runtime_context()
    if ctx.get_actor_id() is None:
        return False
    with warnings.catch_warnings():
        # Ray 2.60's was_current_actor_reconstructed reads its own deprecated ``actor_id``
        # (RayDeprecationWarning "Use get_actor_id() instead"): Ray's code, not ours.
        warnings.filterwarnings("ignore", message="This API is deprecated")
        return bool(ctx.was_current_actor_reconstructed)


class ShardBuffer:
    """Callable class for ``map_batches`` (one actor): writes each shard once it is whole."""

    def __init__(self, work: str, s3: storage.S3Options, fail_after: int | None = None) -> None:
        # Restarted after its process or node was lost, it would have lost the part-shards it
        # held and wait forever for rows that already passed: it refuses, so the pass fails
        # and the mine pipeline runs it again over the unwritten shards. (Ray Data has no
        # named parameter for max_restarts=0; its **ray_remote_args are deprecated.)
        if _restarted_actor():
            raise RuntimeError("the judged-shard writer was lost; it is not restarted")
        storage.configure(s3)
        self.work = work
        self.fail_after = fail_after
        self.pending: dict[str, list[pa.Table]] = {}
        self.seen: dict[str, set[int]] = {}  # ordinals buffered per pending shard
        self.done: set[str] = set()
        self.written = 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        stats = []
        for shard in pc.unique(batch[S.SHARD]).to_pylist():
            if shard in self.done:
                continue
            part = batch.filter(pc.equal(batch[S.SHARD], shard))
            # A block computed twice (a task retried after its node was lost) must not count
            # its rows twice, or the shard would never be whole.
            seen = self.seen.setdefault(shard, set())
            fresh = [o not in seen for o in part[S.ORDINAL].to_pylist()]
            if not all(fresh):
                part = part.filter(pa.array(fresh))
            if not len(part):
                continue
            seen.update(part[S.ORDINAL].to_pylist())
            self.pending.setdefault(shard, []).append(part)
            if len(seen) == part[S.SHARD_ROWS][0].as_py():
                del self.seen[shard]
                self.done.add(shard)
                parts = self.pending.pop(shard)
                stats.append(
                    self._write(shard, pa.concat_tables(parts, promote_options="permissive"))
                )
        return pa.Table.from_pylist(stats, schema=STATS_SCHEMA)

    def _write(self, shard: str, rows: pa.Table) -> dict[str, object]:
        if self.fail_after is not None and self.written >= self.fail_after:
            raise RuntimeError(f"fail_after_shards={self.fail_after}: stopping before {shard}")
        rows = rows.sort_by(S.ORDINAL)
        if S.STAGE not in rows.column_names:
            rows = rows.append_column(S.STAGE, pa.nulls(len(rows), pa.string()))
        bad = quarantine_table(rows)
        good = rows.filter(pc.is_null(rows[S.ERROR]))
        q_uri = storage.join(self.work, QUARANTINE_DIR, f"{shard}.parquet")
        if len(bad):
            storage.write_parquet(q_uri, bad)
        else:
            storage.delete(q_uri)  # a stale file of an earlier, different run
        storage.write_parquet(judged_uri(self.work, shard), conform(good, judged_schema()))
        self.written += 1
        return {S.SHARD: shard, "rows": len(rows), "ok": len(good)}
