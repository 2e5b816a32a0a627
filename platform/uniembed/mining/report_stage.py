"""Fill a :class:`MineReport` from a mine output, one shard file at a time.

Only per-query scalars and fixed-bin histograms are accumulated, so the driver's memory
does not grow with the data.
"""

from __future__ import annotations

import pyarrow.compute as pc

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data import shards
from uniembed.data.schema import AUC, CAND_SCORES, JUDGE_S, N_PAIRS
from uniembed.data.shards import QUARANTINE_DIR
from uniembed.mining.report import MineReport
from uniembed.mining.shards import JUDGED_DIR

MAX_REASONS = 10
SELECT_SUFFIX = ".select.parquet"


def _sum(table, column: str) -> float:  # noqa: ANN001 - a pyarrow Table
    value = pc.sum(table[column]).as_py()
    return float(value or 0)


def add_quarantine(report: MineReport, output: str) -> None:
    """Count quarantined pool items and query rows (per stage), with a few reasons."""
    for sub, key in (("pool/items", "quarantined"), ("pool/embeddings", "rows_quarantined")):
        manifest = shards.read_manifest(storage.join(output, sub)) or {}
        report.pool_quarantined += int(manifest.get(key, 0))
    if report.pool_quarantined:
        # Counted with the queries' quarantine, so the job's total covers every row it set aside.
        report.quarantined["pool"] = report.pool_quarantined
    embedded = shards.read_manifest(storage.join(output, "pool/embeddings")) or {}
    report.pool_items = int(embedded.get("rows_out", 0))
    for f in storage.list_files(storage.join(output, QUARANTINE_DIR), suffix=".parquet"):
        if f.endswith(SELECT_SUFFIX):
            continue  # counted as rows_without_negatives by the select stage
        table = storage.read_parquet(f)
        report.queries += len(table)
        for row in table.to_pylist():
            stage = row[S.STAGE] or "read"
            report.quarantined[stage] = report.quarantined.get(stage, 0) + 1
            if len(report.quarantine_reasons) < MAX_REASONS:
                report.quarantine_reasons.append(f"[{stage}] {row[S.REASON]}")


def add_judged(report: MineReport, output: str) -> None:
    """Accumulate counts, busy seconds, AUC and score histograms of every judged shard."""
    embed_s = retrieve_s = 0.0
    for f in storage.list_files(storage.join(output, JUDGED_DIR), suffix=".parquet"):
        t = storage.read_parquet(f)
        if len(t) == 0:
            continue
        report.queries += len(t)
        report.candidates_retrieved += int(_sum(t, S.N_RETRIEVED))
        report.dropped_easy += int(_sum(t, S.N_EASY))
        report.dropped_above_max += int(_sum(t, S.N_ABOVE_MAX))
        report.true_fn_retrieved += int(_sum(t, S.N_TRUE_FN_RETRIEVED))
        report.positives_in_top_k += len(t) - t[S.POS_RANK].null_count
        embed_s += _sum(t, S.EMBED_S)
        retrieve_s += _sum(t, S.RETRIEVE_S)
        if t[S.POS_SCORE].null_count == len(t):
            continue  # similarity mode: nothing judged
        report.judged_pairs += int(_sum(t, N_PAIRS))
        report.judge_busy_seconds += _sum(t, JUDGE_S)
        aucs = t[AUC].drop_null()
        report.auc_sum += _sum(t, AUC)
        report.auc_rows += len(aucs)
        report.add_scores(
            t[S.POS_SCORE].drop_null().to_numpy(),
            pc.list_flatten(t[CAND_SCORES]).to_numpy(zero_copy_only=False),
        )
    report.stage_seconds["queries: embed (busy)"] = embed_s
    report.stage_seconds["queries: retrieve (busy)"] = retrieve_s
    report.stage_seconds["queries: judge (busy)"] = report.judge_busy_seconds
