"""Per-step metrics: similarity statistics and the run's ``metrics.csv``."""

from __future__ import annotations

import csv
import io
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from uniembed import storage

METRICS_FILE = "metrics.csv"
COLUMNS = (
    "step",
    "epoch",
    "loss",
    "lr",
    "samples_per_s",
    "pos_sim",
    "hard_neg_sim",
    "sim_gap",
    "temperature",  # a learned temperature (rzen), else empty
    "step_time_s",
    "time",  # unix time at the end of the step: wall-clock throughput between steps
)


@torch.no_grad()
def similarity_stats(
    query: Tensor, positive: Tensor, negatives: Tensor | None = None, mask: Tensor | None = None
) -> dict[str, float]:
    """Mean cosine of each query with its positive, and with its hardest negative.

    Args:
        query: ``(n, d)``; positive: ``(n, d)``, row i is query i's positive.
        negatives: optional ``(n, k, d)`` mined negatives; mask: ``(n, k)`` bool, True = real.

    The hardest negative of row i is the most similar of the other rows' positives and its
    own valid mined negatives.
    """
    q = F.normalize(query.float(), dim=-1)
    p = F.normalize(positive.float(), dim=-1)
    sim = q @ p.T  # (n, n)
    n = sim.shape[0]
    pos = sim.diagonal()
    candidates = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=sim.device), -2.0)
    if negatives is not None and negatives.shape[1] > 0:
        hard = torch.einsum("nd,nkd->nk", q, F.normalize(negatives.float(), dim=-1))
        if mask is not None:
            hard = hard.masked_fill(~mask, -2.0)
        candidates = torch.cat([candidates, hard], dim=1)
    hardest = candidates.max(dim=1).values
    has_neg = hardest > -2.0
    hard_mean = float(hardest[has_neg].mean()) if bool(has_neg.any()) else float("nan")
    return {"pos_sim": float(pos.mean()), "hard_neg_sim": hard_mean}


class MetricsLog:
    """Rows of ``metrics.csv`` in the run folder; ``flush`` rewrites the file atomically.

    On resume, rows after the restored step are dropped: those steps are trained again.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.rows: list[dict[str, Any]] = []

    def resume(self, step: int) -> None:
        """Load the existing file, keeping the rows up to ``step``."""
        if not storage.exists(self.uri):
            return
        reader = csv.DictReader(io.StringIO(storage.read_text(self.uri)))
        self.rows = [r for r in reader if int(r["step"]) <= step]

    def add(self, row: dict[str, Any]) -> None:
        """Append one step's metrics (keys from ``COLUMNS``; missing ones stay empty)."""
        self.rows.append({c: row.get(c, "") for c in COLUMNS})

    def flush(self) -> None:
        """Write all rows to ``self.uri``."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(self.rows)
        storage.write_text(self.uri, out.getvalue())


def read_metrics(uri: str) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` with numeric values (empty cells become NaN)."""
    reader = csv.DictReader(io.StringIO(storage.read_text(uri)))
    return [{k: float(v) if v != "" else float("nan") for k, v in r.items()} for r in reader]
