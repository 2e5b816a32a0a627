"""The fused rerank score and the fit of its weight (uniembed.reranker.fusion), by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uniembed.reranker.fusion import (
    FUSION_FILE,
    Fusion,
    fit_fusion,
    fusion_path,
    load_fusion,
    precision_at_1,
    reranker_logit,
)


def _p(logits: list[float]) -> np.ndarray:
    """P(Yes) whose logit is ``logits``."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def test_weight_is_the_smallest_with_the_best_precision_at_1() -> None:
    # Both queries: cosines .6 .4 .2 (z: 1, 0, -1 times 1.2247: mean .4, std .1633); judge
    # logits q1 -1 1 0, q2 0 1 -1 (z: the logit times 1.2247: mean 0, std .8165). Fused, up
    # to that common factor: q1 [1-2w, w, w-1] (gold 1 first when w > 1/3), q2 [1-w, w, -1]
    # (gold 0 first while w <= 1/2, a tie keeping the embedder's order). So p@1 is 0.5 below
    # 1/3 and above 1/2, 1.0 from 0.35 to 0.5; the smallest best weight of the grid is 0.35.
    cos = [np.array([0.6, 0.4, 0.2])] * 2
    p_yes = [_p([-1, 1, 0]), _p([0, 1, -1])]
    relevant = [np.array([False, True, False]), np.array([True, False, False])]
    fit = fit_fusion(cos, p_yes, relevant, embedder="e", reranker="r", split="two queries")
    f = fit.fusion
    assert f.weight == 0.35
    assert f.embedder_mean == pytest.approx(0.4) and f.embedder_std == pytest.approx(
        0.1633, abs=1e-4
    )
    assert f.reranker_mean == pytest.approx(0, abs=1e-12)
    assert f.reranker_std == pytest.approx(0.8165, abs=1e-4)
    assert f.metrics == {"queries": 2, "p@1_embedder": 0.5, "p@1_reranker": 0.5, "p@1_fused": 1.0}
    assert fit.curve[0.0] == fit.curve[0.3] == fit.curve[0.55] == fit.curve[1.0] == 0.5
    assert fit.curve[0.35] == fit.curve[0.45] == 1.0  # (0.5 is a tie in exact arithmetic)
    want = np.sqrt(1.5) * np.array([0.3, 0.35, -0.65])  # 1.2247 = 1 / std of (1, 0, -1)
    np.testing.assert_allclose(f.fuse(cos[0], p_yes[0]), want, rtol=1e-9)
    assert f.split == "two queries"


def test_a_reranker_at_chance_gets_weight_zero_and_the_embedders_order() -> None:
    rng = np.random.default_rng(0)
    cos = [np.sort(rng.uniform(0, 1, 10))[::-1] for _ in range(40)]
    relevant = [np.eye(10, dtype=bool)[q % 10] for q in range(40)]
    # a judge that says the same for everything: every weight ranks as the embedder
    flat = fit_fusion(cos, [np.full(10, 0.5)] * 40, relevant, embedder="e", reranker="r")
    assert flat.fusion.weight == 0.0 and len(set(flat.curve.values())) == 1
    # a judge at chance where the embedder is right whenever the gold was retrieved: any
    # weight that moves a document can only lose, so the weight stays at the embedder's
    first = [np.eye(10, dtype=bool)[0] if q % 2 else np.zeros(10, bool) for q in range(40)]
    noise = [rng.uniform(0, 1, 10) for _ in range(40)]
    fit = fit_fusion(cos, noise, first, embedder="e", reranker="r")
    assert fit.fusion.weight == 0.0
    assert fit.fusion.metrics["p@1_fused"] == fit.fusion.metrics["p@1_embedder"] == 0.5
    assert fit.fusion.metrics["p@1_reranker"] < 0.5
    for c, p in zip(cos, noise):
        order = np.argsort(-fit.fusion.fuse(c, p), kind="stable")
        assert order.tolist() == list(range(10))


def test_precision_at_1_breaks_ties_by_the_embedders_order() -> None:
    rel = [np.array([False, True]), np.array([True, False])]
    assert precision_at_1([np.array([0.5, 0.5]), np.array([0.5, 0.5])], rel) == 0.5
    assert precision_at_1([np.array([0.1, 0.9]), np.array([0.5, 0.5])], rel) == 1.0
    with pytest.raises(ValueError, match="no queries"):
        precision_at_1([], [])


def test_saturated_p_yes_has_a_finite_logit() -> None:
    got = reranker_logit(np.array([0.0, 0.5, 1.0], np.float32))
    assert np.isfinite(got).all() and got[1] == 0.0
    assert got[0] == pytest.approx(-got[2], rel=1e-6) and got[2] == pytest.approx(16.118, abs=1e-3)


def test_stored_fusion_is_read_back_and_bad_files_name_the_field(tmp_path: Path) -> None:
    f = Fusion(0.25, 1.0, 2.0, 0.3, 0.1, embedder="minilm", reranker="r", metrics={"a": 1})
    folder = tmp_path / "judge"
    folder.mkdir()
    assert fusion_path("judge", str(folder)) is None
    (folder / FUSION_FILE).write_text(f.to_json())
    assert fusion_path("judge", str(folder)) == folder / FUSION_FILE
    assert load_fusion(folder / FUSION_FILE) == f
    bad = tmp_path / "bad.json"
    good = json.loads(f.to_json())
    for field, value in [("wieght", 1), ("weight", 1.5), ("embedder_std", 0)]:
        bad.write_text(json.dumps({**good, field: value}))
        with pytest.raises(ValueError, match=f"{bad}.*{field}"):
            load_fusion(bad)
