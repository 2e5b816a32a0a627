"""Hard-negative mining: FAISS retrieval over the candidate pool and pure selection rules."""

from __future__ import annotations

from uniembed.mining.ids import IdMap
from uniembed.mining.index import (
    build_index,
    default_nlist,
    index_from_bytes,
    index_kind,
    index_to_bytes,
    search,
)
from uniembed.mining.retrieval import Candidates, drop_above, drop_easy, topk_candidates
from uniembed.mining.selection import (
    Selection,
    cyclic_order,
    select_by_similarity,
    select_with_judge,
)
from uniembed.mining.store import load_index, read_metadata, save_index

__all__ = [
    "Candidates",
    "IdMap",
    "Selection",
    "build_index",
    "cyclic_order",
    "default_nlist",
    "drop_above",
    "drop_easy",
    "index_from_bytes",
    "index_kind",
    "index_to_bytes",
    "load_index",
    "read_metadata",
    "save_index",
    "search",
    "select_by_similarity",
    "select_with_judge",
    "topk_candidates",
]
