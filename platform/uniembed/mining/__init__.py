"""Hard-negative mining: the pure rules (retrieval filters, selection, sanity, report) beside
the Ray stages that run them (``*_stage.py``), the mine pipeline and its config.

The names below are imported on first use (PEP 562): the judge actors import
``uniembed.mining.judge_stage`` in vLLM's own environment, which has no FAISS, and must not
pull in retrieval through this package."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uniembed.mining.retrieval import Candidates, drop_above, drop_easy, topk_candidates
    from uniembed.mining.selection import (
        Selection,
        cyclic_order,
        select_by_similarity,
        select_with_judge,
    )

_MODULE_OF = {
    "Candidates": "retrieval",
    "drop_above": "retrieval",
    "drop_easy": "retrieval",
    "topk_candidates": "retrieval",
    "Selection": "selection",
    "cyclic_order": "selection",
    "select_by_similarity": "selection",
    "select_with_judge": "selection",
}

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


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
