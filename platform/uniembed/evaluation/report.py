"""The evaluation results structure and the report written from it.

The eval job fills an ``EvalResults`` (or its ``to_dict()`` form) and calls ``write_report``:

    EvalResults
      model: str                      model name or checkpoint URI
      data: str                       eval data URI or suite name
      tasks: {task: TaskResult}
        TaskResult
          metrics: {name: float}      e.g. candidate_list_metrics' precision@1, hit@5, mrr
          gold_scores: (n_queries,)   score of the gold candidate per query
          best_distractor_scores: (n_queries,)  highest non-gold score per query
          gold_ranks: (n_queries,)    1-based rank of the gold (ties against it)
          n_queries: int
          primary_metric: str         the task's headline number (default precision@1)
      dedupe: DedupeStats | None      n_total item references, n_unique items embedded
      timings: {stage: seconds}
      groups: {group: [task, ...]} | None   None: MMEB's CLS/VQA/RET/VG table
      extra: {key: JSON value}        anything else worth printing (hardware, commit)

Written files: ``report.md``, ``metrics.json`` (summary: metrics, group means, baseline
deltas, meta), ``per_query.npz`` (the per-query arrays, keys ``<task>/gold_scores`` ...),
``score_distributions.png``, ``gold_rank_hist.png`` and ``excluded.jsonl`` (every row left
out of a task: ``task``, ``source`` file:line, ``reason``; empty when none was).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uniembed.evaluation.groups import (
    MMEB_GROUPS,
    OVERALL,
    aggregate,
    group_of,
    groups_from_mapping,
)
from uniembed.evaluation.metrics import CandidateScores, candidate_list_metrics
from uniembed.evaluation.plots import plot_gold_ranks, plot_score_distributions

_ARRAYS = ("gold_scores", "best_distractor_scores", "gold_ranks")


@dataclass
class TaskResult:
    """One task's metrics and per-query arrays (shapes ``(n_queries,)``)."""

    metrics: dict[str, float]
    gold_scores: np.ndarray
    best_distractor_scores: np.ndarray
    gold_ranks: np.ndarray
    n_queries: int
    primary_metric: str = "precision@1"
    kind: str = "candidates"  # candidates | captions | compositional (evaluation.tasks)
    n_excluded: int = 0  # queries left out because one of their items failed to embed
    excluded: list[str] = field(default_factory=list)  # "file:line: reason" of each
    # compositional tasks: {category: {"accuracy": fraction, "n": pairs}}
    categories: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.n_excluded, bool) or int(self.n_excluded) < 0:
            raise ValueError(f"n_excluded: must be >= 0, got {self.n_excluded!r}")
        self.n_excluded = int(self.n_excluded)
        self.excluded = [str(e) for e in self.excluded]
        self.categories = {str(c): dict(v) for c, v in self.categories.items()}
        self.gold_scores = np.asarray(self.gold_scores, dtype=np.float64)
        self.best_distractor_scores = np.asarray(self.best_distractor_scores, dtype=np.float64)
        self.gold_ranks = np.asarray(self.gold_ranks, dtype=np.int64)
        if isinstance(self.n_queries, bool) or int(self.n_queries) < 1:
            raise ValueError(f"n_queries: must be >= 1, got {self.n_queries!r}")
        self.n_queries = int(self.n_queries)
        for name in _ARRAYS:
            arr = getattr(self, name)
            if arr.shape != (self.n_queries,):
                raise ValueError(f"{name}: expected shape ({self.n_queries},), got {arr.shape}")
        if np.any(self.gold_ranks < 1):
            raise ValueError("gold_ranks: ranks are 1-based; found a value < 1")
        for key, value in self.metrics.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"metrics[{key!r}]: expected a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"metrics[{key!r}]: must be finite, got {value!r}")
        self.metrics = {k: float(v) for k, v in self.metrics.items()}
        if self.primary_metric not in self.metrics:
            raise ValueError(f"primary_metric: {self.primary_metric!r} is not in metrics")

    @property
    def score(self) -> float:
        """The primary metric's value."""
        return float(self.metrics[self.primary_metric])

    @classmethod
    def from_candidate_scores(
        cls, scores: CandidateScores, ks: Sequence[int] = (1, 5, 10)
    ) -> TaskResult:
        """Build from MMEB-style candidate scores (gold at index 0); see ``candidate_list_metrics``.

        Args:
            scores: per-query candidate scores, as ``candidate_list_metrics`` takes them.
            ks: cutoffs for ``hit@k``.
        """
        m = candidate_list_metrics(scores, ks)
        arrays = {"gold_rank", "gold_score", "best_distractor_score", "n_queries"}
        return cls(
            metrics={k: v for k, v in m.items() if k not in arrays},
            gold_scores=m["gold_score"],
            best_distractor_scores=m["best_distractor_score"],
            gold_ranks=m["gold_rank"],
            n_queries=m["n_queries"],
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"metrics": dict(self.metrics), "n_queries": self.n_queries}
        d["primary_metric"] = self.primary_metric
        d["kind"] = self.kind
        d["n_excluded"] = self.n_excluded
        d["excluded"] = list(self.excluded)
        d["categories"] = {c: dict(v) for c, v in self.categories.items()}
        for name in _ARRAYS:
            d[name] = getattr(self, name).tolist()
        return d


@dataclass
class DedupeStats:
    """Item references in the eval rows (queries + candidates) vs distinct items embedded."""

    n_total: int
    n_unique: int

    def __post_init__(self) -> None:
        if not 0 <= self.n_unique <= self.n_total or self.n_total < 1:
            raise ValueError(
                f"dedupe: need 0 <= n_unique <= n_total and n_total >= 1, "
                f"got n_unique={self.n_unique}, n_total={self.n_total}"
            )

    @property
    def rate(self) -> float:
        """Share of references that did not need their own embedding."""
        return 1.0 - self.n_unique / self.n_total


@dataclass
class EvalResults:
    """Everything the report shows; see the module docstring for the layout."""

    model: str
    data: str
    tasks: dict[str, TaskResult]
    dedupe: DedupeStats | None = None
    timings: dict[str, float] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks: no task results")
        for name, task in self.tasks.items():
            if not isinstance(task, TaskResult):
                raise ValueError(
                    f"tasks[{name!r}]: expected a TaskResult, got {type(task).__name__}"
                )
        if self.groups is not None:
            self.groups = groups_from_mapping(self.groups)
        try:
            json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"extra: values must be JSON-serialisable ({e})") from e

    @property
    def group_table(self) -> Mapping[str, Sequence[str]]:
        return MMEB_GROUPS if self.groups is None else self.groups

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``from_dict`` reads it back."""
        return {
            "model": self.model,
            "data": self.data,
            "tasks": {name: t.to_dict() for name, t in self.tasks.items()},
            "dedupe": None if self.dedupe is None else vars(self.dedupe).copy(),
            "timings": dict(self.timings),
            "groups": None if self.groups is None else {g: list(t) for g, t in self.groups.items()},
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalResults:
        """Build from the ``to_dict`` layout; errors name the missing or bad field."""
        for key in ("model", "data", "tasks"):
            if key not in d:
                raise ValueError(f"results: missing key {key!r}")
        tasks = {}
        for name, t in d["tasks"].items():
            try:
                tasks[name] = t if isinstance(t, TaskResult) else TaskResult(**t)
            except (TypeError, ValueError) as e:
                raise ValueError(f"results.tasks[{name!r}]: {e}") from e
        dedupe = d.get("dedupe")
        if isinstance(dedupe, Mapping):
            dedupe = DedupeStats(int(dedupe["n_total"]), int(dedupe["n_unique"]))
        return cls(
            model=str(d["model"]),
            data=str(d["data"]),
            tasks=tasks,
            dedupe=dedupe,
            timings=dict(d.get("timings") or {}),
            groups=d.get("groups"),
            extra=dict(d.get("extra") or {}),
        )


def baseline_scores(baseline: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """(name, {task: score}) from a baseline: an earlier ``metrics.json`` (``tasks`` with
    ``metrics`` and ``primary_metric``) or ``{"name": str, "scores": {task: fraction}}``.

    Scores are fractions in [0, 1]; a value above 1 is refused (a percent by mistake).
    """
    if "scores" in baseline:
        name, raw = str(baseline.get("name", "baseline")), dict(baseline["scores"])
    elif "tasks" in baseline:
        name = str(baseline.get("model", "baseline"))
        raw = {}
        for task, t in baseline["tasks"].items():
            primary = t.get("primary_metric", "precision@1")
            if primary not in t.get("metrics", {}):
                raise ValueError(f"baseline.tasks[{task!r}]: no metric {primary!r}")
            raw[task] = t["metrics"][primary]
    else:
        raise ValueError("baseline: expected a 'scores' mapping or an earlier metrics.json")
    for task, s in raw.items():
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s <= 1.0:
            raise ValueError(f"baseline[{task!r}]: expected a fraction in [0, 1], got {s!r}")
    return name, {t: float(s) for t, s in raw.items()}


_RATE_PREFIXES = (
    "precision@",
    "hit@",
    "recall@",
    "accuracy",
    "image_to_text_R@",
    "text_to_image_R@",
)


def _is_rate(metric: str) -> bool:
    return metric.startswith(_RATE_PREFIXES)


def _fmt(metric: str, value: float) -> str:
    return f"{100 * value:.1f}" if _is_rate(metric) else f"{value:.3f}"


def _header(metric: str) -> str:
    return f"{metric} (%)" if _is_rate(metric) else metric


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """An aligned Markdown table; the first ``left`` columns are text, the rest numbers."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w + 2) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)]
    return [line(headers), "|" + "|".join(rule) + "|", *(line(r) for r in rows)]


def _delta(ours: float, base: float) -> str:
    return f"{100 * (ours - base):+.1f}"


_KIND_TITLES = {
    "candidates": "Candidate lists (gold at index 0)",
    "captions": "Caption retrieval (text-to-image per-query columns)",
    "compositional": "Compositional pairs (true vs altered caption)",
}


def _task_table(tasks: Mapping[str, TaskResult], groups: Mapping[str, Sequence[str]]) -> list[str]:
    """One row per task; queries are those scored, excluded ones in their own column."""
    metric_names = list(dict.fromkeys(k for t in tasks.values() for k in t.metrics))
    heads = ["Task", "Group", "Queries", "Excluded", *(_header(m) for m in metric_names)]
    heads.append("median gold rank")
    rows = []
    for name, t in tasks.items():
        cells = [_fmt(m, t.metrics[m]) if m in t.metrics else "—" for m in metric_names]
        med = f"{float(np.median(t.gold_ranks)):g}"
        rows.append(
            [name, group_of(name, groups), str(t.n_queries), str(t.n_excluded), *cells, med]
        )
    return _table(heads, rows, left=2)


def _category_lines(tasks: Mapping[str, TaskResult]) -> list[str]:
    rows = [
        [name, cat, str(int(v["n"])), f"{100 * v['accuracy']:.1f}"]
        for name, t in tasks.items()
        for cat, v in t.categories.items()
    ]
    if not rows:
        return []
    md = ["## Compositional accuracy by category", ""]
    return md + _table(["Task", "Category", "Pairs", "accuracy (%)"], rows, left=2) + [""]


MAX_LISTED = 20  # excluded rows named per task in report.md and metrics.json
EXCLUDED_FILE = "excluded.jsonl"  # every excluded row: {"task", "source", "reason"}


def _exclusion_lines(tasks: Mapping[str, TaskResult]) -> list[str]:
    hit = {n: t for n, t in tasks.items() if t.n_excluded}
    if not hit:
        return []
    md = ["## Excluded queries", ""]
    md += [
        "A query is left out of its task's metrics when its own item or any of its "
        "candidates could not be embedded (missing or unreadable image): scoring it "
        "against fewer candidates would overstate the model.",
        "",
    ]
    for name, t in hit.items():
        md.append(f"- **{name}**: {t.n_excluded} of {t.n_queries + t.n_excluded} excluded")
        md += [f"  - `{reason}`" for reason in t.excluded[:MAX_LISTED]]
        if min(len(t.excluded), MAX_LISTED) < t.n_excluded:
            more = t.n_excluded - min(len(t.excluded), MAX_LISTED)
            md.append(f"  - ... and {more} more (every excluded row: `{EXCLUDED_FILE}`)")
    return md + [""]


def write_report(
    out_dir_local: str, results: EvalResults | Mapping[str, Any], baseline: Mapping[str, Any] | None
) -> list[str]:
    """Write ``report.md``, ``metrics.json``, ``per_query.npz`` and two PNG plots.

    Args:
        out_dir_local: local directory (created if missing); the caller uploads it.
        results: an ``EvalResults`` or its ``to_dict()`` form.
        baseline: None, or see ``baseline_scores``. Group deltas compare means over the
            tasks both runs scored, so a partial baseline never skews a group.

    Returns the written file paths.
    """
    res = results if isinstance(results, EvalResults) else EvalResults.from_dict(results)
    out = Path(out_dir_local)
    out.mkdir(parents=True, exist_ok=True)
    table = res.group_table
    ours = {name: t.score for name, t in res.tasks.items()}
    agg = aggregate(ours, table)
    base_name, base = baseline_scores(baseline) if baseline is not None else ("", {})
    shared = [t for t in ours if t in base]
    cmp_ours = aggregate({t: ours[t] for t in shared}, table) if shared else {}
    cmp_base = aggregate({t: base[t] for t in shared}, table) if shared else {}
    primaries = sorted({t.primary_metric for t in res.tasks.values()})
    primary = primaries[0] if len(primaries) == 1 else "primary metric"

    md = [f"# Evaluation report: {res.model}", ""]
    md += [f"- Model: `{res.model}`", f"- Data: `{res.data}`", f"- Tasks: {len(res.tasks)}"]
    md += [f"- Queries: {sum(t.n_queries for t in res.tasks.values())}"]
    md += [f"- {k}: {v}" for k, v in res.extra.items()]
    md += ["", "## Scores by group", ""]
    heads = ["Group", "Tasks", f"{primary} (%)"]
    partial = bool(shared) and len(shared) < len(ours)
    if shared:
        heads += (["Ours, shared tasks (%)"] if partial else []) + [f"{base_name} (%)", "Δ (pp)"]
    rows = []
    for g, v in agg.items():
        n = len(res.tasks) if g == OVERALL else sum(group_of(t, table) == g for t in res.tasks)
        row = [g, str(n), f"{100 * v:.1f}"]
        if shared and g in cmp_base:
            row += [f"{100 * cmp_ours[g]:.1f}"] if partial else []
            row += [f"{100 * cmp_base[g]:.1f}", _delta(cmp_ours[g], cmp_base[g])]
        elif shared:
            row += ["—"] * (3 if partial else 2)
        rows.append(row)
    md += _table(heads, rows)
    if partial:
        md += ["", f"Baseline columns and Δ use the {len(shared)} tasks both runs scored."]

    md += ["", "## Per task", ""]
    kinds = list(dict.fromkeys(t.kind for t in res.tasks.values()))
    for kind in kinds:
        of_kind = {n: t for n, t in res.tasks.items() if t.kind == kind}
        if len(kinds) > 1:
            md += [f"### {_KIND_TITLES.get(kind, kind)}", ""]
        md += _task_table(of_kind, table) + [""]
    md += _category_lines(res.tasks)
    md += _exclusion_lines(res.tasks)
    md = md[:-1] if md[-1] == "" else md

    comparison: dict[str, Any] | None = None
    if baseline is not None:
        md += ["", f"## Baseline comparison: {base_name}", ""]
        rows = [
            [t, f"{100 * ours[t]:.1f}", f"{100 * base[t]:.1f}", _delta(ours[t], base[t])]
            for t in shared
        ]
        md += _table(["Task", "Ours (%)", f"{base_name} (%)", "Δ (pp)"], rows)
        missing = [t for t in base if t not in ours]
        if missing:
            md += ["", f"Not evaluated here (baseline only): {', '.join(missing)}."]
        comparison = {
            "name": base_name,
            "tasks": {
                t: {"ours": ours[t], "baseline": base[t], "delta": ours[t] - base[t]}
                for t in shared
            },
            "groups": {g: {"ours": cmp_ours[g], "baseline": cmp_base[g]} for g in cmp_base},
        }

    if res.dedupe is not None:
        d = res.dedupe
        md += ["", "## Embedding dedupe", ""]
        md += _table(
            ["Item references", "Unique items embedded", "Dedupe rate (%)"],
            [[str(d.n_total), str(d.n_unique), f"{100 * d.rate:.1f}"]],
            left=0,
        )
    if res.timings:
        md += ["", "## Timings", ""]
        md += _table(["Stage", "Seconds"], [[k, f"{v:.1f}"] for k, v in res.timings.items()])

    dist_png = out / "score_distributions.png"
    rank_png = out / "gold_rank_hist.png"
    plot_score_distributions(
        {n: (t.gold_scores, t.best_distractor_scores, t.score) for n, t in res.tasks.items()},
        dist_png,
    )
    plot_gold_ranks({n: t.gold_ranks for n, t in res.tasks.items()}, rank_png)
    md += ["", "## Plots", "", f"![gold vs best distractor]({dist_png.name})", ""]
    md += [f"![gold rank histogram]({rank_png.name})", ""]

    report_md = out / "report.md"
    report_md.write_text("\n".join(md), encoding="utf-8")
    summary = res.to_dict()
    for t in summary["tasks"].values():
        for name in _ARRAYS:
            del t[name]
        t["excluded"] = t["excluded"][:MAX_LISTED]
    summary["dedupe"] = (
        None if res.dedupe is None else {**vars(res.dedupe), "rate": res.dedupe.rate}
    )
    summary["aggregate"] = agg
    summary["baseline"] = comparison
    metrics_json = out / "metrics.json"
    metrics_json.write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
    per_query = out / "per_query.npz"
    np.savez_compressed(
        per_query, **{f"{n}/{a}": getattr(t, a) for n, t in res.tasks.items() for a in _ARRAYS}
    )
    # Written even when empty, so that it replaces an earlier run's in the same output.
    excluded = out / EXCLUDED_FILE
    excluded.write_text(
        "".join(
            json.dumps({"task": name, "source": why.split(": ", 1)[0], "reason": why}) + "\n"
            for name, t in res.tasks.items()
            for why in t.excluded
        ),
        encoding="utf-8",
    )
    written = [report_md, metrics_json, per_query, dist_png, rank_png, excluded]
    return [str(p) for p in written]
