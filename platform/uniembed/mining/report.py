"""The mine job's report: judge sanity (AUC), score histograms, counts and times per stage.

Pure functions and a dataclass; the pipeline fills a :class:`MineReport` shard by shard
(histograms have fixed bins, so nothing needs all scores at once) and :func:`write_report`
writes ``report.md``, ``report.json`` and ``judge_scores.png``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uniembed.mining.sanity import SanityVerdict

HIST_BINS = 20  # judge scores are probabilities: 20 bins of 0.05 over [0, 1]
MAX_SELECT_REASONS = 20  # per-query reasons of emptied / capped queries kept in the report


def positive_auc(pos_score: float, cand_scores: Sequence[float] | np.ndarray) -> float | None:
    """Share of candidates scored below the positive, ties counting half: the AUC of one
    query's positive against its candidates. None without candidates.

    Example: positive 0.8, candidates (0.9, 0.8, 0.1) -> (0 + 0.5 + 1) / 3 = 0.5.
    """
    c = np.asarray(cand_scores, dtype=np.float64)
    if c.size == 0:
        return None
    if math.isnan(pos_score) or np.isnan(c).any():
        raise ValueError("positive_auc: scores must not be NaN")
    return float(((c < pos_score).sum() + 0.5 * (c == pos_score).sum()) / c.size)


def histogram(values: Sequence[float] | np.ndarray, bins: int = HIST_BINS) -> list[int]:
    """Counts of ``values`` in ``bins`` equal bins over [0, 1] (1.0 falls in the last bin)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    counts, _ = np.histogram(v, bins=bins, range=(0.0, 1.0))
    return counts.astype(int).tolist()


def share(part: int, whole: int) -> float | None:
    """``part / whole`` or None when ``whole`` is 0."""
    return part / whole if whole else None


@dataclass
class MineReport:
    """What a mine run did. Counts cover every shard of the output, resumed ones included."""

    embedder: str
    judge: str | None
    k: int
    beta: float
    queries: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)  # stage -> rows
    quarantine_reasons: list[str] = field(default_factory=list)  # a few examples
    pool_items: int = 0
    pool_quarantined: int = 0
    candidates_retrieved: int = 0
    dropped_easy: int = 0
    dropped_above_max: int = 0  # the upper filter (retrieval.max_sim, δ)
    positives_in_top_k: int = 0
    judged_pairs: int = 0
    false_negatives_filtered: int = 0
    rows_written: int = 0
    rows_filled: int = 0
    negatives_filled: int = 0
    rows_without_negatives: int = 0
    true_fn_retrieved: int = 0
    true_fn_judged: int = 0
    true_fn_caught: int = 0
    max_fn_share: float = 1.0  # selection.max_fn_share
    rows_fn_capped: int = 0  # queries the false-negative rule would have emptied or thinned
    fn_kept_by_cap: int = 0  # candidates above s_pos - beta kept as negatives by the cap
    select_reasons: list[str] = field(default_factory=list)  # emptied / capped queries
    auc_sum: float = 0.0
    auc_rows: int = 0
    auc_floor: float = 0.6
    pos_hist: list[int] = field(default_factory=lambda: [0] * HIST_BINS)
    cand_hist: list[int] = field(default_factory=lambda: [0] * HIST_BINS)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    judge_busy_seconds: float = 0.0
    sanity: SanityVerdict | None = None  # the judge's check (judge mode)

    def add_select_stats(self, stats: dict[str, Any]) -> None:
        """Add one select task's counts, and its queries' reasons (one a line, up to
        :data:`MAX_SELECT_REASONS` kept)."""
        for key, value in stats.items():
            if key == "shard":
                continue
            if key == "select_reasons":
                room = MAX_SELECT_REASONS - len(self.select_reasons)
                self.select_reasons += [x for x in str(value).split("\n") if x][: max(0, room)]
            else:
                setattr(self, key, getattr(self, key) + int(value))

    def add_scores(self, pos_scores: Sequence[float], cand_scores: Sequence[float]) -> None:
        """Accumulate judge scores into the positive and candidate histograms."""
        self.pos_hist = [a + b for a, b in zip(self.pos_hist, histogram(pos_scores))]
        self.cand_hist = [a + b for a, b in zip(self.cand_hist, histogram(cand_scores))]

    @property
    def auc(self) -> float | None:
        """Mean per-query AUC of the positive's judge score against its candidates'."""
        return self.auc_sum / self.auc_rows if self.auc_rows else None

    @property
    def judge_passes(self) -> bool | None:
        """False when the judge's AUC is below the floor; None when nothing was judged."""
        return None if self.auc is None else self.auc >= self.auc_floor

    @property
    def pairs_per_s(self) -> float | None:
        """Judge pairs per busy second of the judge actors."""
        return self.judged_pairs / self.judge_busy_seconds if self.judge_busy_seconds else None

    @property
    def fn_catch_share(self) -> float | None:
        """Share of true false negatives that reached the judge and that the filter removed."""
        return share(self.true_fn_caught, self.true_fn_judged)

    @property
    def score_source(self) -> str:
        """Whose scores chose the negatives and set the soft labels."""
        return self.sanity.score_source if self.sanity is not None else "embedder"

    def warning(self) -> str | None:
        """The loud warning for a judge that failed its check or is below the AUC floor over
        all judged queries, or None."""
        if self.sanity is not None and self.sanity.action != "judge":
            return self.sanity.line(self.judge or "")
        if self.judge_passes is not False:
            return None
        return (
            f"JUDGE BELOW FLOOR: {self.judge} scores positives above their candidates with "
            f"AUC {self.auc:.3f} < floor {self.auc_floor:.2f}; its false-negative filter and "
            "soft labels are close to noise on this data (fine-tune it with the reranker "
            "job, or use a stronger judge)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field plus the derived figures, JSON-ready."""
        out = dataclasses.asdict(self)
        out.update(
            auc=self.auc,
            judge_passes=self.judge_passes,
            pairs_per_s=self.pairs_per_s,
            fn_catch_share=self.fn_catch_share,
            score_source=self.score_source,
            warning=self.warning(),
        )
        return out


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def render_markdown(r: MineReport) -> str:
    """The report as Markdown."""
    lines = ["# Mine report", ""]
    if r.warning():
        lines += [f"> **WARNING** {r.warning()}", ""]
    lines += [
        f"embedder `{r.embedder}`, judge `{r.judge or 'none (similarity mode)'}`, K={r.k}"
        # beta is the judge's false-negative margin: a similarity-mode run never uses it.
        + (f", beta={r.beta}" if r.judge else ""),
        "",
        "## Counts per stage",
        "",
        "| stage | count |",
        "|---|---|",
        f"| pool items embedded | {r.pool_items} ({r.pool_quarantined} quarantined) |",
        f"| queries read | {r.queries} |",
        *[f"| quarantined at {k} | {v} |" for k, v in sorted(r.quarantined.items())],
        f"| candidates retrieved | {r.candidates_retrieved} |",
        f"| positives in the top K | {r.positives_in_top_k} |",
        f"| dropped as easy | {r.dropped_easy} |",
        f"| dropped above the similarity ceiling (δ) | {r.dropped_above_max} |",
        f"| pairs judged (incl. positives) | {r.judged_pairs} |",
        f"| false negatives filtered | {r.false_negatives_filtered} |",
        f"| queries capped by max_fn_share={r.max_fn_share} / candidates kept by the cap "
        f"| {r.rows_fn_capped} / {r.fn_kept_by_cap} |",
        f"| rows written | {r.rows_written} |",
        f"| rows filled / negatives repeated | {r.rows_filled} / {r.negatives_filled} |",
        f"| rows without any negative (quarantined) | {r.rows_without_negatives} |",
        "",
        *_judge_lines(r),
        "",
        "## Time per stage (s)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in r.stage_seconds.items()],
    ]
    if r.select_reasons:
        lines += [
            "",
            "## Queries the false-negative rule emptied or capped",
            "",
            f"{r.rows_without_negatives} quarantined, {r.rows_fn_capped} capped "
            f"(the first {len(r.select_reasons)}; all emptied ones are in "
            "`quarantine/*.select.parquet`):",
            "",
            *[f"- {x}" for x in r.select_reasons],
        ]
    if r.quarantine_reasons:
        lines += ["", "## Quarantine examples", "", *[f"- {x}" for x in r.quarantine_reasons]]
    return "\n".join(lines) + "\n"


def _judge_lines(r: MineReport) -> list[str]:
    if r.judge is None:
        return [
            "## Scores",
            "",
            "- no judge (similarity mode): the embedder's cosine similarities chose the "
            "negatives (margins and ranges of the `selection` section) and are the rows' "
            "scores (`score_source: embedder`)",
        ]
    check = "not made" if r.sanity is None else r.sanity.line(r.judge)
    return [
        "## Judge",
        "",
        f"- sanity check: {check}",
        f"- scores that chose the negatives and set the soft labels: `{r.score_source}`",
        f"- AUC of positive vs its candidates over all judged queries (mean per query): "
        f"{_fmt(r.auc)} (floor {r.auc_floor}, {'pass' if r.judge_passes else 'FAIL'})",
        f"- pairs/s: {_fmt(r.pairs_per_s, '.2f')} ({r.judged_pairs} pairs in "
        f"{r.judge_busy_seconds:.1f} busy s)",
        f"- true false negatives (same group as the positive): {r.true_fn_retrieved} retrieved, "
        f"{r.true_fn_judged} judged, {r.true_fn_caught} filtered = catch share "
        f"{_fmt(r.fn_catch_share)}",
        "- score histograms: `judge_scores.png`",
    ]


def render_png(r: MineReport) -> bytes:
    """Histograms of judge scores, positives vs candidates, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, 1.0 / HIST_BINS
    pos = np.asarray(r.pos_hist, dtype=float)
    cand = np.asarray(r.cand_hist, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(centers, cand / max(cand.sum(), 1), width=width, alpha=0.6, label="candidates")
    ax.bar(centers, pos / max(pos.sum(), 1), width=width, alpha=0.6, label="positives")
    ax.set_xlabel("judge P(Yes)")
    ax.set_ylabel("share of pairs")
    ax.set_title(f"{r.judge}: AUC {_fmt(r.auc)}")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def write_report(r: MineReport, folder: str) -> None:
    """Write ``report.md``, ``report.json`` and ``judge_scores.png`` under ``folder``."""
    from uniembed import storage

    storage.write_text(storage.join(folder, "report.md"), render_markdown(r))
    storage.write_text(
        storage.join(folder, "report.json"), json.dumps(r.to_dict(), indent=2) + "\n"
    )
    storage.write_bytes(storage.join(folder, "judge_scores.png"), render_png(r))
