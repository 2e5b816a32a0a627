"""The false-negative rule's cap (``selection.max_fn_share``) replayed on a mine run's judged
shards: rows kept, queries quarantined, false negatives filtered and true false negatives
(``group_field`` mates of the positive) still caught, per share, for the judge's scores and
for the embedder's (the judge-fallback path).

    python benchmarks/fn_cap.py OUTPUT [--shares 1,0.5,0.3,0.2,0.1] [--beta 0.01] [--k 10]

OUTPUT is a finished mine output (its ``judged/`` folder); nothing is re-run, only the pure
selection (``uniembed.mining.selection_stage.select_table``) over the stored scores.
"""

from __future__ import annotations

import argparse

import pyarrow as pa

from uniembed import storage
from uniembed.data import schema as S
from uniembed.mining.config import SelectionSection
from uniembed.mining.selection_stage import SelectOptions, select_table


def replay(judged: pa.Table, source: str, share: float, beta: float, k: int) -> dict[str, int]:
    """Counts of one replay of the selection over ``judged`` with ``max_fn_share=share``."""
    opts = SelectOptions(
        selection=SelectionSection(mode="judge", num_negatives=k, beta=beta, max_fn_share=share),
        score_source=source,
        embedder="-",
        judge="-",
        k=0,
    )
    _, _, stats = select_table(judged, opts)
    return stats


def main() -> None:
    """Print one Markdown table row per (scores, share)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output")
    ap.add_argument("--shares", default="1,0.5,0.3,0.2,0.1")
    ap.add_argument("--beta", type=float, default=0.01)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    judged = storage.read_parquet(storage.join(a.output, "judged"))
    sources = [S.SCORE_EMBEDDER]
    if judged[S.POS_SCORE].null_count < len(judged):
        sources.insert(0, S.SCORE_JUDGE)
    n_cand = sum(len(c) for c in judged[S.CAND_IDS].to_pylist())
    print(f"{len(judged)} queries, {n_cand} candidates, beta {a.beta}, k {a.k}\n")
    print(
        "| scores | max_fn_share | rows kept | quarantined | capped | FN filtered "
        "| true FN caught / judged |"
    )
    print("|---|---|---|---|---|---|---|")
    for source in sources:
        for share in (float(x) for x in a.shares.split(",")):
            s = replay(judged, source, share, a.beta, a.k)
            print(
                f"| {source} | {share:g} | {s['rows_written']} | {s['rows_without_negatives']} "
                f"| {s['rows_fn_capped']} | {s['false_negatives_filtered']} "
                f"| {s['true_fn_caught']} / {s['true_fn_judged']} |"
            )


if __name__ == "__main__":
    main()
