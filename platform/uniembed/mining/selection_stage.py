"""Selection and write: judged shards in, training rows (MINED_SCHEMA) and exports out.

Per shard, one task: read ``judged/<shard>.parquet``, select each query's hard negatives
(:mod:`uniembed.mining.selection`), write ``mined/<shard>.parquet``,
``export/<shard>.json`` (UniME-V2 layout) and, for rows left without any negative,
``quarantine/<shard>.select.parquet``. Deterministic, so a rerun rewrites the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.schema import CAND_SCORES
from uniembed.data.shards import QUARANTINE_DIR
from uniembed.mining import Selection, select_by_similarity, select_with_judge
from uniembed.mining.config import SelectionSection
from uniembed.mining.export import unime_v2_json
from uniembed.mining.selection import selection_reason

MINED_DIR = "mined"
EXPORT_DIR = "export"
SELECT_STAGE = "select"
SELECT_STATS = ("rows_written", "rows_filled", "negatives_filled", "rows_without_negatives")
FN_STATS = (
    "false_negatives_filtered",
    "true_fn_judged",
    "true_fn_caught",
    "rows_fn_capped",
    "fn_kept_by_cap",
)
REASONS = "select_reasons"  # per shard: the reasons of emptied or capped queries, one a line


@dataclass(frozen=True)
class SelectOptions:
    """The job's ``selection`` section, whose scores select, and the provenance each row
    records; picklable."""

    selection: SelectionSection
    score_source: str  # S.SCORE_JUDGE or S.SCORE_EMBEDDER: whose scores select
    embedder: str
    judge: str | None
    k: int  # candidates retrieved per query (retrieval.k)


def select_row(row: dict[str, Any], o: SelectOptions) -> Selection:
    """The hard negatives of one judged row. In judge mode the UniME-V2 rule (false-negative
    filter, cyclical sampling) runs on the judge's scores, or on the embedder's similarities
    when the judge failed its sanity check (``score_source``)."""
    s = o.selection
    if s.mode == "judge":
        by_judge = o.score_source == S.SCORE_JUDGE
        return select_with_judge(
            row[S.CAND_IDS],
            row[CAND_SCORES] if by_judge else row[S.CAND_SIMS],
            row[S.POS_SCORE] if by_judge else row[S.POS_SIM],
            k=s.num_negatives,
            beta=s.beta,
            positive_id=row[S.POS_ID],
            step=s.step,
            ranks=row[S.CAND_RANKS],
            max_fn_share=s.max_fn_share,
            resolution=s.score_resolution,
        )
    return select_by_similarity(
        row[S.CAND_IDS],
        row[S.CAND_SIMS],
        row[S.POS_SIM],
        num_negatives=s.num_negatives,
        absolute_margin=s.absolute_margin,
        relative_margin=s.relative_margin,
        range_min=s.range_min,
        range_max=s.range_max,
        sampling_strategy=s.sampling_strategy,
        seed=s.seed + row[S.ORDINAL],  # each query its own draw, stable across reruns
        positive_id=row[S.POS_ID],
        ranks=row[S.CAND_RANKS],
        known_positive_ids=_group_mates(row),
    )


def _group_mates(row: dict[str, Any]) -> list[str]:
    """Candidates that share the positive's group (``group_field``): known positives."""
    flags = row[S.CAND_TRUE_FN] or [False] * len(row[S.CAND_IDS])
    return [cid for cid, f in zip(row[S.CAND_IDS], flags, strict=True) if f]


def mined_row(row: dict[str, Any], sel: Selection, o: SelectOptions) -> dict[str, Any]:
    """One MINED_SCHEMA row. Its scores are the judge's P(Yes), or the embedder's cosine
    similarities (``score_source: embedder``), the positive's included."""
    judged = o.score_source == S.SCORE_JUDGE
    return {
        S.QUERY_ID: row[S.ID],
        S.QUERY_TEXT: row[S.TEXT],
        S.QUERY_IMAGE: row[S.IMAGE_URI],
        S.QUERY_INSTRUCTION: row[S.INSTRUCTION],
        S.POS_ID: row[S.POS_ID],
        S.POS_TEXT: row[S.POS_TEXT],
        S.POS_IMAGE: row[S.POS_IMAGE],
        S.POS_SCORE: row[S.POS_SCORE] if judged else row[S.POS_SIM],
        S.NEG_IDS: list(sel.negative_ids),
        S.NEG_TEXTS: [row[S.CAND_TEXTS][p] for p in sel.positions],
        S.NEG_IMAGES: [row[S.CAND_IMAGES][p] for p in sel.positions],
        S.NEG_SCORES: list(sel.scores),
        S.NEG_RANKS: list(sel.ranks),
        S.FILLED: sel.filled,
        S.N_FILLED: sel.n_filled,
        S.EMBEDDER: o.embedder,
        S.JUDGE: o.judge if judged else None,
        S.TOP_K: o.k,
        S.BETA: o.selection.beta,
        S.SCORE_SOURCE: o.score_source,
    }


def row_reason(row: dict[str, Any], sel: Selection, o: SelectOptions) -> str | None:
    """Why selection emptied or capped this query (judge mode), naming the record; or None."""
    if o.selection.mode != "judge":
        if sel.is_empty:
            return (
                f"record {row[S.ID]}: no hard negative left of {len(row[S.CAND_IDS])} "
                "candidates after the similarity margins and ranges"
            )
        return None
    by_judge = o.score_source == S.SCORE_JUDGE
    pos = row[S.POS_SCORE] if by_judge else row[S.POS_SIM]
    n = sum(1 for cid in row[S.CAND_IDS] if cid != row[S.POS_ID])
    why = selection_reason(sel, float(pos), o.selection.beta, n)
    if why is None:
        return None
    scorer = "judge" if by_judge else "embedder (judge fallback)"
    head = "no hard negative left" if sel.is_empty else "false-negative rule capped"
    return f"record {row[S.ID]}: {head}: {scorer} {why}"


def select_table(judged: pa.Table, o: SelectOptions) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """Select over one judged shard: (mined rows, quarantine rows, counts). The counts hold
    ``select_reasons`` too: the emptied and capped queries' reasons, one a line."""
    mined, bad = [], []
    stats: dict[str, Any] = dict.fromkeys(SELECT_STATS + FN_STATS, 0)
    reasons: list[str] = []
    for row in judged.to_pylist():
        sel = select_row(row, o)
        why = row_reason(row, sel, o)
        if why is not None:
            reasons.append(why)
        stats["rows_fn_capped"] += int(sel.n_capped > 0)
        stats["fn_kept_by_cap"] += sel.n_capped
        fn = set(sel.false_negative_ids)
        stats["false_negatives_filtered"] += len(fn)
        flags = row[S.CAND_TRUE_FN] or []
        stats["true_fn_judged"] += sum(flags)
        stats["true_fn_caught"] += sum(
            1 for cid, f in zip(row[S.CAND_IDS], flags, strict=True) if f and cid in fn
        )
        if sel.is_empty:
            bad.append(
                {
                    S.ID: row[S.ID],
                    S.STAGE: SELECT_STAGE,
                    S.REASON: why,
                    S.SOURCE: row[S.SOURCE],
                }
            )
            stats["rows_without_negatives"] += 1
            continue
        mined.append(mined_row(row, sel, o))
        stats["rows_written"] += 1
        stats["rows_filled"] += int(sel.filled)
        stats["negatives_filled"] += sel.n_filled
    stats[REASONS] = "\n".join(reasons)
    return (
        pa.Table.from_pylist(mined, schema=S.MINED_SCHEMA),
        pa.Table.from_pylist(bad, schema=S.QUARANTINE_SCHEMA),
        stats,
    )


def selector(out: str, work: str, o: SelectOptions, s3: storage.S3Options):  # noqa: ANN201
    """A Ray Data UDF: a batch of shard names in, their outputs written, counts out."""
    from uniembed.mining.shards import judged_uri

    def run(batch: dict[str, Any]) -> dict[str, list[Any]]:
        storage.configure(s3)
        rows: list[dict[str, Any]] = []
        for shard in batch[S.SHARD]:
            shard = str(shard)
            mined, bad, stats = select_table(storage.read_parquet(judged_uri(work, shard)), o)
            q_uri = storage.join(out, QUARANTINE_DIR, f"{shard}.select.parquet")
            if len(bad):
                storage.write_parquet(q_uri, bad)
            else:
                storage.delete(q_uri)
            storage.write_text(
                storage.join(out, EXPORT_DIR, f"{shard}.json"), unime_v2_json(mined.to_pylist())
            )
            storage.write_parquet(storage.join(out, MINED_DIR, f"{shard}.parquet"), mined)
            rows.append({S.SHARD: shard, **stats})
        return {k: [r[k] for r in rows] for k in (S.SHARD, *SELECT_STATS, *FN_STATS, REASONS)}

    return run
