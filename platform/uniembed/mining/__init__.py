"""Hard-negative mining: the pure rules (retrieval filters, selection, sanity, report) beside
the Ray stages that run them (``*_stage.py``), the mine pipeline and its config."""

from __future__ import annotations

from uniembed.mining.retrieval import Candidates, drop_above, drop_easy, topk_candidates
from uniembed.mining.selection import (
    Selection,
    cyclic_order,
    select_by_similarity,
    select_with_judge,
)

__all__ = [
    "Candidates",
    "Selection",
    "cyclic_order",
    "drop_above",
    "drop_easy",
    "select_by_similarity",
    "select_with_judge",
    "topk_candidates",
]
