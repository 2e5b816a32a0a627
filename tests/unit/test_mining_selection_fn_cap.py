"""The false-negative cap (``selection.max_fn_share``) and the per-query reasons, without Ray:
hand-computed cases of the pure functions, one judged shard through ``select_table``, and the
report's counts."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from uniembed.config import ConfigError
from uniembed.data import schema as S
from uniembed.data.schema import CAND_SCORES
from uniembed.mining.config import SelectionSection
from uniembed.mining.report import MineReport, render_markdown
from uniembed.mining.selection import fn_cap, select_with_judge, selection_reason
from uniembed.mining.selection_stage import REASONS, SelectOptions, select_table


def test_fn_cap_floors_the_share() -> None:
    assert fn_cap(20, 0.25) == 5
    assert fn_cap(10, 0.3) == 3  # not 2 from 0.3 * 10 = 2.9999999999999996
    assert fn_cap(3, 0.25) == 0
    assert fn_cap(20, 1.0) == 20
    assert fn_cap(0, 0.5) == 0
    with pytest.raises(ValueError, match="max_fn_share"):
        fn_cap(10, 1.5)
    with pytest.raises(ValueError, match="max_fn_share"):
        fn_cap(10, -0.1)


def test_unsure_positive_keeps_the_query_under_the_cap() -> None:
    """Positive 0.1, beta 0.01: all four candidates are above 0.09. The paper's rule empties
    the query; a cap of 0.25 removes only the highest (a) and keeps b, c, d as negatives."""
    ids, scores = ["a", "b", "c", "d"], [0.9, 0.5, 0.3, 0.2]
    paper = select_with_judge(ids, scores, 0.1, k=3, beta=0.01)
    assert paper.is_empty and paper.false_negative_ids == ("a", "b", "c", "d")
    assert paper.n_flagged == 4 and paper.n_capped == 0
    capped = select_with_judge(ids, scores, 0.1, k=3, beta=0.01, max_fn_share=0.25)
    assert capped.false_negative_ids == ("a",)
    assert capped.negative_ids == ("b", "c", "d")
    assert capped.scores == pytest.approx((0.5, 0.3, 0.2))
    assert (capped.n_flagged, capped.n_capped, capped.n_available) == (4, 3, 3)


def test_cap_removes_the_highest_flagged_and_ignores_the_positive() -> None:
    """Six candidates besides the positive p; threshold 0.5 - 0.01 = 0.49 flags e .95, c .9,
    a .7 and f .6 (four). fn_cap(6, 0.34) = 2: e and c are removed, a and f stay negatives
    ahead of b .4 and d .1."""
    ids = ["a", "b", "c", "p", "d", "e", "f"]
    scores = [0.7, 0.4, 0.9, 0.99, 0.1, 0.95, 0.6]
    sel = select_with_judge(ids, scores, 0.5, k=4, beta=0.01, positive_id="p", max_fn_share=0.34)
    assert sel.false_negative_ids == ("c", "e")  # input order
    # kept sorted: a .7, f .6, b .4, d .1; k=4 takes all (cyclic positions 0, 1, 2, 3)
    assert sel.negative_ids == ("a", "f", "b", "d")
    assert (sel.n_flagged, sel.n_capped) == (4, 2)


def test_cap_leaves_a_sure_positive_alone() -> None:
    """Positive 0.9 flags only a (.95): below the cap, the rule is the paper's."""
    ids, scores = ["a", "b", "c", "d"], [0.95, 0.3, 0.5, 0.1]
    sel = select_with_judge(ids, scores, 0.9, k=3, beta=0.01, max_fn_share=0.5)
    assert sel == select_with_judge(ids, scores, 0.9, k=3, beta=0.01)
    assert (
        sel.false_negative_ids == ("a",)
        and sel.negative_ids == ("c", "b", "d")
        and sel.n_capped == 0
    )
    assert selection_reason(sel, 0.9, 0.01, 4) is None


def test_selection_reason_says_why() -> None:
    ids, scores = ["a", "b", "c", "d"], [0.9, 0.5, 0.3, 0.2]
    emptied = select_with_judge(ids, scores, 0.1, k=3, beta=0.01)
    assert selection_reason(emptied, 0.1, 0.01, 4) == (
        "positive scored 0.100 (threshold s_pos - beta = 0.090): all 4 candidates within "
        "beta, filtered as false negatives"
    )
    capped = select_with_judge(ids, scores, 0.1, k=3, beta=0.01, max_fn_share=0.25)
    assert selection_reason(capped, 0.1, 0.01, 4) == (
        "positive scored 0.100 (threshold s_pos - beta = 0.090): 4 of 4 candidates within "
        "beta; the 1 highest filtered, 3 kept as negatives (max_fn_share)"
    )
    none = select_with_judge([], [], 0.5, k=3)
    assert "no candidate left" in (selection_reason(none, 0.5, 0.01, 0) or "")


def _row(qid: str, pos: float, scores: list[float]) -> dict:
    n = len(scores)
    return {
        S.ID: qid,
        S.TEXT: "t",
        S.IMAGE_URI: None,
        S.INSTRUCTION: None,
        S.SOURCE: "q.jsonl:1",
        S.POS_ID: "p",
        S.POS_TEXT: "pt",
        S.POS_IMAGE: None,
        S.POS_SCORE: pos,
        S.ORDINAL: 0,
        S.CAND_IDS: [f"c{i}" for i in range(n)],
        S.CAND_TEXTS: [f"C{i}" for i in range(n)],
        S.CAND_IMAGES: [None] * n,
        S.CAND_SIMS: [0.5] * n,
        S.CAND_RANKS: list(range(n)),
        CAND_SCORES: scores,
        S.CAND_TRUE_FN: [True] + [False] * (n - 1),
        S.POS_SIM: 0.9,
    }


def _opts(share: float) -> SelectOptions:
    return SelectOptions(
        selection=SelectionSection(mode="judge", num_negatives=2, beta=0.01, max_fn_share=share),
        score_source=S.SCORE_JUDGE,
        embedder="minilm",
        judge="j",
        k=4,
    )


def test_select_table_counts_and_reasons() -> None:
    """q1's positive (0.05) is below all four candidates; q2's (0.95) above all of them."""
    table = pa.Table.from_pylist(
        [_row("q1", 0.05, [0.9, 0.6, 0.4, 0.2]), _row("q2", 0.95, [0.9, 0.6, 0.4, 0.2])]
    )
    mined, bad, stats = select_table(table, _opts(1.0))
    assert mined[S.QUERY_ID].to_pylist() == ["q2"] and bad[S.ID].to_pylist() == ["q1"]
    assert bad[S.REASON][0].as_py() == (
        "record q1: no hard negative left: judge positive scored 0.050 (threshold s_pos - "
        "beta = 0.040): all 4 candidates within beta, filtered as false negatives"
    )
    assert (stats["rows_fn_capped"], stats["fn_kept_by_cap"]) == (0, 0)
    assert stats["false_negatives_filtered"] == 4 and stats["true_fn_caught"] == 1

    mined, bad, stats = select_table(table, _opts(0.5))
    assert mined[S.QUERY_ID].to_pylist() == ["q1", "q2"] and len(bad) == 0
    # q1: fn_cap(4, .5) = 2 removes c0 (.9, the true false negative) and c1 (.6)
    assert mined[S.NEG_IDS][0].as_py() == ["c2", "c3"]
    assert (stats["rows_fn_capped"], stats["fn_kept_by_cap"]) == (1, 2)
    assert stats["false_negatives_filtered"] == 2 and stats["true_fn_caught"] == 1
    assert stats[REASONS].startswith("record q1: false-negative rule capped: judge positive")

    report = MineReport(embedder="minilm", judge="j", k=4, beta=0.01, max_fn_share=0.5)
    report.add_select_stats({S.SHARD: "s0", **stats})
    report.add_select_stats({S.SHARD: "s1", **stats})
    assert (report.rows_written, report.rows_fn_capped, report.fn_kept_by_cap) == (4, 2, 4)
    assert len(report.select_reasons) == 2
    md = render_markdown(report)
    assert "| queries capped by max_fn_share=0.5 / candidates kept by the cap | 2 / 4 |" in md
    assert "## Queries the false-negative rule emptied or capped" in md
    assert "- record q1: false-negative rule capped" in md


def test_fallback_reason_names_the_embedder() -> None:
    row = _row("q1", 0.95, [0.9, 0.6, 0.4, 0.2])
    row[S.CAND_SIMS] = [0.95, 0.94, 0.93, 0.92]
    opts = dataclasses.replace(_opts(1.0), score_source=S.SCORE_EMBEDDER)
    _, bad, _ = select_table(pa.Table.from_pylist([row]), opts)
    assert "embedder (judge fallback) positive scored 0.900" in bad[S.REASON][0].as_py()


def test_max_fn_share_is_checked() -> None:
    with pytest.raises(ConfigError, match="max_fn_share"):
        SelectionSection(max_fn_share=1.5)
