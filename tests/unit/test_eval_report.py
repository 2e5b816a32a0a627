"""Task groups, aggregation and the written report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uniembed.evaluation.groups import (
    MMEB_GROUPS,
    aggregate,
    group_of,
    groups_from_mapping,
    load_groups,
)
from uniembed.evaluation.report import (
    DedupeStats,
    EvalResults,
    TaskResult,
    baseline_scores,
    write_report,
)

# --- groups ------------------------------------------------------------------------------


def test_mmeb_table_has_the_36_tasks_in_four_groups() -> None:
    assert {g: len(t) for g, t in MMEB_GROUPS.items()} == {"CLS": 10, "VQA": 10, "RET": 12, "VG": 4}
    tasks = [t for ts in MMEB_GROUPS.values() for t in ts]
    assert len(set(tasks)) == 36
    assert group_of("MSCOCO") == "VG" and group_of("MSCOCO_t2i") == "RET"
    assert group_of("Visual7W") == "VQA" and group_of("Visual7W-Pointing") == "VG"
    assert group_of("NotAnMMEBTask") == "Other"


def test_aggregate_means_per_group_and_over_all_tasks() -> None:
    per_task = {"ImageNet-1K": 0.5, "N24News": 0.7, "OK-VQA": 0.2, "MyTask": 0.9}
    agg = aggregate(per_task)
    assert list(agg) == ["CLS", "VQA", "Other", "overall"]  # RET and VG have no task
    assert agg["CLS"] == pytest.approx(0.6)
    assert agg["VQA"] == pytest.approx(0.2)
    assert agg["Other"] == pytest.approx(0.9)
    # Overall is the mean over tasks (0.575), not over groups (0.5667).
    assert agg["overall"] == pytest.approx(0.575)


def test_groups_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "groups.yaml"
    path.write_text("text:\n  - STS\n  - NLI\nimage: [Flickr]\n")
    groups = load_groups(str(path))
    assert groups == {"text": ("STS", "NLI"), "image": ("Flickr",)}
    agg = aggregate({"STS": 0.8, "NLI": 0.6, "Flickr": 0.1, "ImageNet-1K": 0.3}, groups)
    assert agg == pytest.approx({"text": 0.7, "image": 0.1, "Other": 0.3, "overall": 0.45})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"a": ["x"], "b": ["y", "x"]}, r"groups\.b: task 'x' is already in group a"),
        ({"overall": ["x"]}, r"'overall' is reserved"),
        ({"a": "x"}, r"groups\.a: expected a non-empty list"),
        ({"a": [3]}, r"groups\.a: task 3 must be a non-empty string"),
        ({}, r"groups: expected a non-empty mapping"),
    ],
)
def test_groups_reject_bad_tables(data: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        groups_from_mapping(data)


def test_aggregate_rejects_bad_scores() -> None:
    with pytest.raises(ValueError, match=r"per_task: no task scores"):
        aggregate({})
    with pytest.raises(ValueError, match=r"per_task\['GQA'\]: score must be finite"):
        aggregate({"GQA": float("nan")})


# --- report ------------------------------------------------------------------------------
def _results() -> EvalResults:
    # ImageNet-1K: 3 of 4 golds on top (0.75); OK-VQA: 0 of 2 (0.0); MyTask: 1 of 1.
    imagenet = np.array([[0.9, 0.1, 0.2], [0.8, 0.3, 0.1], [0.7, 0.6, 0.0], [0.2, 0.5, 0.4]])
    okvqa = np.array([[0.1, 0.4], [0.3, 0.3]])
    return EvalResults(
        model="uniembed-tiny",
        data="s3://bucket/mmeb-eval",
        tasks={
            "ImageNet-1K": TaskResult.from_candidate_scores(imagenet),
            "OK-VQA": TaskResult.from_candidate_scores(okvqa),
            "MyTask": TaskResult.from_candidate_scores(np.array([[0.6, 0.5, 0.4]])),
        },
        dedupe=DedupeStats(n_total=200, n_unique=150),
        timings={"embed": 12.25, "score": 0.5},
        extra={"hardware": "2 CPU"},
    )


BASELINE = {"name": "paper", "scores": {"ImageNet-1K": 0.5, "OK-VQA": 0.25, "EDIS": 0.9}}


def _table_blocks(md: str) -> list[list[str]]:
    blocks, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    return blocks + ([cur] if cur else [])


def test_write_report_files_tables_and_deltas(tmp_path: Path) -> None:
    paths = write_report(str(tmp_path / "out"), _results(), BASELINE)
    names = sorted(Path(p).name for p in paths)
    assert names == sorted(
        [
            "report.md",
            "metrics.json",
            "per_query.npz",
            "score_distributions.png",
            "gold_rank_hist.png",
            "excluded.jsonl",
        ]
    )
    for p in paths:  # excluded.jsonl is empty: no row was excluded
        assert Path(p).stat().st_size > 0 or Path(p).name == "excluded.jsonl"
    assert (tmp_path / "out" / "excluded.jsonl").read_text() == ""
    for png in ("score_distributions.png", "gold_rank_hist.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    for task in ("ImageNet-1K", "OK-VQA", "MyTask"):
        assert task in md
    # Per-task deltas in percentage points: 75.0 vs 50.0, 0.0 vs 25.0.
    assert "| ImageNet-1K |     75.0 |      50.0 |  +25.0 |" in md
    assert "| OK-VQA      |      0.0 |      25.0 |  -25.0 |" in md
    # Group deltas compare the shared tasks only: overall 37.5 vs 37.5 though ours is 58.3.
    assert (
        "| overall |     3 |            58.3 |                   37.5 |      37.5 |   +0.0 |" in md
    )
    assert "Not evaluated here (baseline only): EDIS." in md
    assert "25.0" in md.split("## Embedding dedupe")[1]  # 1 - 150/200
    blocks = _table_blocks(md)
    assert len(blocks) >= 5
    for block in blocks:
        assert len({len(line) for line in block}) == 1, block  # aligned columns

    summary = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert summary["aggregate"] == pytest.approx(
        {"CLS": 0.75, "VQA": 0.0, "Other": 1.0, "overall": 1.75 / 3}
    )
    assert summary["baseline"]["tasks"]["ImageNet-1K"]["delta"] == pytest.approx(0.25)
    assert summary["baseline"]["tasks"]["OK-VQA"]["delta"] == pytest.approx(-0.25)
    assert summary["dedupe"]["rate"] == pytest.approx(0.25)
    assert summary["tasks"]["OK-VQA"]["metrics"]["precision@1"] == 0.0
    assert "gold_ranks" not in summary["tasks"]["OK-VQA"]  # per-query arrays go to the npz
    per_query = np.load(tmp_path / "out" / "per_query.npz")
    assert per_query["OK-VQA/gold_ranks"].tolist() == [2, 2]  # 0.3 ties 0.3: against the gold
    np.testing.assert_allclose(
        per_query["ImageNet-1K/best_distractor_scores"], [0.2, 0.3, 0.6, 0.5]
    )


def test_report_from_dict_and_earlier_metrics_as_baseline(tmp_path: Path) -> None:
    res = _results()
    write_report(str(tmp_path / "a"), res, None)
    md_a = (tmp_path / "a" / "report.md").read_text(encoding="utf-8")
    assert "Baseline comparison" not in md_a
    # The dict form gives the same summary as the dataclass.
    write_report(str(tmp_path / "b"), json.loads(json.dumps(res.to_dict())), None)
    assert (tmp_path / "a" / "metrics.json").read_text(encoding="utf-8") == (
        tmp_path / "b" / "metrics.json"
    ).read_text(encoding="utf-8")
    # An earlier run's metrics.json works as a baseline: every delta is zero.
    earlier = json.loads((tmp_path / "a" / "metrics.json").read_text(encoding="utf-8"))
    name, scores = baseline_scores(earlier)
    assert name == "uniembed-tiny" and scores["ImageNet-1K"] == 0.75
    write_report(str(tmp_path / "c"), res, earlier)
    summary = json.loads((tmp_path / "c" / "metrics.json").read_text(encoding="utf-8"))
    assert {t: d["delta"] for t, d in summary["baseline"]["tasks"].items()} == {
        "ImageNet-1K": 0.0,
        "OK-VQA": 0.0,
        "MyTask": 0.0,
    }


def test_report_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"baseline\['GQA'\]: expected a fraction in \[0, 1\]"):
        write_report(str(tmp_path), _results(), {"scores": {"GQA": 63.6}})
    with pytest.raises(ValueError, match=r"results: missing key 'tasks'"):
        write_report(str(tmp_path), {"model": "m", "data": "d"}, None)
    bad = _results().to_dict()
    bad["tasks"]["OK-VQA"]["gold_ranks"] = [1]
    with pytest.raises(ValueError, match=r"results.tasks\['OK-VQA'\]: gold_ranks: expected shape"):
        write_report(str(tmp_path), bad, None)
    with pytest.raises(ValueError, match=r"primary_metric: 'ndcg@5' is not in metrics"):
        TaskResult({"mrr": 1.0}, [1.0], [0.0], [1], 1, primary_metric="ndcg@5")
    with pytest.raises(ValueError, match=r"dedupe: need 0 <= n_unique <= n_total"):
        DedupeStats(n_total=10, n_unique=11)
