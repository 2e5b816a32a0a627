"""A similarity-mode (judge-free) mine report says what chose the negatives, with no
judge check and no beta (a judge-only margin)."""

from __future__ import annotations

from uniembed.mining.report import MineReport, render_markdown


def test_similarity_mode_report_names_the_embedder_and_no_judge_figures() -> None:
    md = render_markdown(MineReport(embedder="minilm", judge=None, k=20, beta=0.01))
    assert "judge `none (similarity mode)`, K=20" in md and "beta" not in md
    assert "cosine similarities chose the negatives" in md
    assert "AUC" not in md and "FAIL" not in md and "WARNING" not in md
    judged = render_markdown(MineReport(embedder="minilm", judge="j", k=20, beta=0.01))
    assert "K=20, beta=0.01" in judged
