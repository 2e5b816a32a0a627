"""The mine report's pure parts: per-query AUC, histograms, the judge-sanity warning."""

from __future__ import annotations

import json

import pytest

from uniembed.mining.report import (
    HIST_BINS,
    MineReport,
    histogram,
    positive_auc,
    render_markdown,
    render_png,
    write_report,
)


def test_positive_auc_hand_computed() -> None:
    # 0.9 above, 0.8 tied (half), 0.1 below -> (0 + 0.5 + 1) / 3
    assert positive_auc(0.8, [0.9, 0.8, 0.1]) == pytest.approx(0.5)
    assert positive_auc(0.95, [0.1, 0.2]) == 1.0
    assert positive_auc(0.05, [0.1, 0.2]) == 0.0
    assert positive_auc(0.5, []) is None


def test_positive_auc_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        positive_auc(float("nan"), [0.1])


def test_histogram_fixed_bins_over_unit_interval() -> None:
    h = histogram([0.0, 0.04, 0.05, 0.99, 1.0])
    assert len(h) == HIST_BINS and sum(h) == 5
    assert h[0] == 2 and h[1] == 1 and h[-1] == 2


def _report(**kw: object) -> MineReport:
    r = MineReport(embedder="minilm", judge="smollm2-135m", k=20, beta=0.01)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_warning_below_floor_and_derived_figures() -> None:
    r = _report(auc_sum=4.5, auc_rows=10, judged_pairs=100, judge_busy_seconds=4.0)
    r.true_fn_judged, r.true_fn_caught = 8, 6
    assert r.auc == pytest.approx(0.45)
    assert r.judge_passes is False
    assert "AUC 0.450 < floor 0.60" in (r.warning() or "")
    assert r.pairs_per_s == pytest.approx(25.0)
    assert r.fn_catch_share == pytest.approx(0.75)
    md = render_markdown(r)
    assert "WARNING" in md and "FAIL" in md and "catch share 0.750" in md


def test_no_warning_when_judge_passes_or_nothing_judged() -> None:
    assert _report(auc_sum=7.0, auc_rows=10).warning() is None
    empty = _report()
    assert empty.auc is None and empty.judge_passes is None and empty.warning() is None
    assert empty.pairs_per_s is None and empty.fn_catch_share is None


def test_add_scores_accumulates(tmp_path) -> None:  # noqa: ANN001
    r = _report()
    r.add_scores([0.9, 0.95], [0.1, 0.2, 0.9])
    r.add_scores([0.97], [0.12])
    assert sum(r.pos_hist) == 3 and sum(r.cand_hist) == 4
    assert render_png(r)[:4] == b"\x89PNG"
    write_report(r, str(tmp_path))
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["pos_hist"] == r.pos_hist and data["k"] == 20
    assert (tmp_path / "report.md").read_text().startswith("# Mine report")
    assert (tmp_path / "judge_scores.png").stat().st_size > 0
