"""Which index a pool gets, and how close an approximate index comes to the exact one.

``plan_index`` is the mine job's rule (``retrieval.index: auto``): an exact flat index up to
``approximate_above`` rows, above it an IVF-Flat index with about sqrt(rows) lists. Exact
search costs rows x dim per query; with queries growing with the pool (a tenth of it in
the scale benchmark) it grows with the square of the pool, while the IVF index's build and
search grow by about rows^1.5. ``recall_at_k`` is the measure used to pick the shipped
``nprobe`` (benchmarks/index_recall.py): the share of the exact top-k an index finds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from uniembed.index.faiss_index import MIN_POINTS_PER_LIST

# Measured by benchmarks/index_recall.py (docs/benchmarks.md, Mine): flat up to here.
APPROXIMATE_ABOVE = 250_000
# Share of the lists visited per query by the automatic IVF index: at 300k rows (548 lists)
# 35% gave recall@20 0.9905 and 25% 0.978 in benchmarks/index_recall.py (docs/benchmarks.md);
# a share, not a count, so that larger pools, which get more lists, keep their recall.
AUTO_PROBE_SHARE = 0.35
# k-means training points per list of the automatic IVF index (FAISS's floor is 39).
AUTO_TRAIN_PER_LIST = 64

PlanKind = Literal["auto", "flat", "ivf"]


@dataclass(frozen=True)
class IndexPlan:
    """The index to build: ``kind`` flat or ivf, its lists and probes (ivf only)."""

    kind: Literal["flat", "ivf"]
    nlist: int | None = None
    nprobe: int = 1
    train_per_list: int = AUTO_TRAIN_PER_LIST

    def line(self, rows: int) -> str:
        """One log line naming the plan."""
        if self.kind == "flat":
            return f"index: flat (exact) over {rows} rows"
        return (
            f"index: ivf over {rows} rows, nlist {self.nlist}, nprobe {self.nprobe} "
            "(approximate; benchmarks/index_recall.py measures its recall)"
        )


def auto_nlist(rows: int) -> int:
    """About sqrt(rows) lists, each with at least 39 rows to train on; at least 1."""
    return max(1, min(round(math.sqrt(rows)), rows // MIN_POINTS_PER_LIST))


def auto_nprobe(nlist: int) -> int:
    """:data:`AUTO_PROBE_SHARE` of ``nlist``, rounded up: 192 of 548 lists, 350 of 1000."""
    return max(1, math.ceil(AUTO_PROBE_SHARE * nlist - 1e-9))


def plan_index(
    rows: int,
    kind: PlanKind = "auto",
    nlist: int | None = None,
    nprobe: int | None = None,
    approximate_above: int = APPROXIMATE_ABOVE,
) -> IndexPlan:
    """The index for a pool of ``rows``: ``auto`` is flat up to ``approximate_above`` rows
    and IVF above; ``flat``/``ivf`` force one. Unset ``nlist``/``nprobe`` of an IVF index
    take :func:`auto_nlist` and :func:`auto_nprobe` (capped at nlist)."""
    if rows < 1:
        raise ValueError(f"rows: a pool needs at least 1 row, got {rows}")
    if kind not in ("auto", "flat", "ivf"):
        raise ValueError(f"kind: {kind!r} is not one of ['auto', 'flat', 'ivf']")
    if approximate_above < 1:
        raise ValueError(f"approximate_above: must be >= 1, got {approximate_above}")
    chosen = ("ivf" if rows > approximate_above else "flat") if kind == "auto" else kind
    if chosen == "flat":
        return IndexPlan("flat")
    lists = auto_nlist(rows) if nlist is None else nlist
    probes = auto_nprobe(lists) if nprobe is None else nprobe
    return IndexPlan("ivf", nlist=lists, nprobe=min(probes, lists))


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found_i ∩ exact_i| / |exact_i|: the share of each query's exact
    top-k (``exact`` (q, k) positions, -1 for none) that ``found`` (q, k') also holds."""
    found, exact = np.asarray(found), np.asarray(exact)
    if found.ndim != 2 or exact.ndim != 2 or found.shape[0] != exact.shape[0]:
        raise ValueError(f"found {found.shape} and exact {exact.shape}: need (q, k) each")
    shares = []
    for f, e in zip(found, exact, strict=True):
        truth = set(e[e >= 0].tolist())
        if truth:
            shares.append(len(truth & set(f[f >= 0].tolist())) / len(truth))
    if not shares:
        raise ValueError("exact: no query has a true neighbour")
    return float(np.mean(shares))
