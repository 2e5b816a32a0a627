"""The reranker's score fused with the embedder's cosine, and the fit of its weight.

A small reranker can order an embedder's candidates worse than the embedder did (the
demo's SmolLM2-135M judge on a domain it never saw). The served rerank score is therefore,
by default, a weighted sum of the two scores of a (query, document) pair, each first put on
a unit scale with statistics of the split the weight was fitted on::

    fused = w * (logit(P(Yes)) - r_mean) / r_std + (1 - w) * (cosine - c_mean) / c_std

``logit(P(Yes))`` is the judge's Yes-No answer-logit margin (P(Yes) is the softmax of those
two logits), which is linear where P(Yes) saturates near 0 or 1. The means and standard
deviations are over every (query, candidate) pair of the fitting split, so a document's
fused score depends on its own pair only, never on the other documents of a request, and
``w`` is the reranker's share of a unit-free sum: ``w = 0`` is the embedder's order, ``w = 1``
the reranker's.

:func:`fit_fusion` picks ``w`` on a grid by precision@1 over held-out queries, ties going to
the smallest ``w`` (the embedder's side), so a reranker that adds nothing on the split gets
``w = 0`` and the fused order is the embedder's. The result is stored with the model as
``fusion.json`` (:data:`FUSION_FILE`) beside the adapter or in the model folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FUSION_FILE = "fusion.json"
GRID = tuple(round(i / 20, 2) for i in range(21))  # 0, 0.05, ..., 1
_P_CLIP = 1e-7  # P(Yes) of exactly 0 or 1 (float32 saturation) has a finite logit


def reranker_logit(p_yes: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` (n,) float64 of P(Yes) (n,), clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(np.asarray(p_yes, dtype=np.float64), _P_CLIP, 1.0 - _P_CLIP)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Fusion:
    """A fitted fusion: the reranker's weight and the unit scales of both scores.

    ``embedder`` and ``reranker`` name the models it was fitted with; ``split`` says on
    which queries; ``metrics`` holds precision@1 of the embedder, the reranker and the
    fused score on that split (and whatever else the fitting script measured).
    """

    weight: float
    reranker_mean: float
    reranker_std: float
    embedder_mean: float
    embedder_std: float
    embedder: str
    reranker: str
    split: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"fusion weight must be in [0, 1], got {self.weight}")
        for name in ("reranker_std", "embedder_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"fusion {name} must be a positive number, got {value}")

    def fuse(self, cosine: np.ndarray, p_yes: np.ndarray) -> np.ndarray:
        """Fused scores (n,) float64 of n pairs' cosines (n,) and P(Yes) (n,)."""
        z_r = (reranker_logit(p_yes) - self.reranker_mean) / self.reranker_std
        z_c = (np.asarray(cosine, dtype=np.float64) - self.embedder_mean) / self.embedder_std
        return self.weight * z_r + (1.0 - self.weight) * z_c

    def to_json(self) -> str:
        """The ``fusion.json`` text."""
        return json.dumps(asdict(self), indent=2) + "\n"


def load_fusion(path: str | Path) -> Fusion:
    """The fusion stored at ``path``; ValueError naming the file and the field if malformed."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object, got {type(raw).__name__}")
    fields = set(Fusion.__dataclass_fields__)
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ValueError(f"{path}: unknown field {unknown[0]!r}")
    try:
        return Fusion(**raw)
    except TypeError as e:  # a missing field
        raise ValueError(f"{path}: {e}") from e
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def fusion_path(model: str, source: str) -> Path | None:
    """Where the fusion of reranker ``model`` is stored: ``models/<model>/fusion.json`` for a
    committed adapter (a registry name), ``<folder>/fusion.json`` for a model folder
    (``source``, the loader's local folder: an ``s3://`` model is fetched first); None when
    that file does not exist."""
    from uniembed.models.adapters import ADAPTERS_ROOT

    for folder in (ADAPTERS_ROOT / model, Path(source)):
        if folder.is_dir() and (folder / FUSION_FILE).is_file():
            return folder / FUSION_FILE
    return None


def precision_at_1(scores: Sequence[np.ndarray], relevant: Sequence[np.ndarray]) -> float:
    """Share of queries whose best-scored candidate is relevant.

    ``scores[q]`` (n_q,) and ``relevant[q]`` (n_q,) bool per query, candidates in the
    embedder's order: equal scores keep that order (a stable sort), so a tie is decided as
    the embedder decided it. A query with no relevant candidate counts as a miss.
    """
    if not scores:
        raise ValueError("precision@1 of no queries")
    hits = [bool(r[int(np.argmax(s))]) for s, r in zip(scores, relevant, strict=True)]
    return float(np.mean(hits))


@dataclass(frozen=True)
class FusionFit:
    """What :func:`fit_fusion` found: the fusion and precision@1 at each grid weight."""

    fusion: Fusion
    curve: dict[float, float]


def fit_fusion(
    cosines: Sequence[np.ndarray],
    p_yes: Sequence[np.ndarray],
    relevant: Sequence[np.ndarray],
    *,
    embedder: str,
    reranker: str,
    split: str = "",
    grid: Sequence[float] = GRID,
) -> FusionFit:
    """The weight of the grid with the best precision@1 on these queries, the smallest
    such weight on a tie (the embedder's side).

    Per query ``q``: ``cosines[q]`` (n_q,) the embedder's cosines of its candidates in the
    embedder's order, ``p_yes[q]`` (n_q,) the reranker's P(Yes), ``relevant[q]`` (n_q,)
    bool. The unit scales are the mean and standard deviation of each score over all pairs.
    """
    if not cosines:
        raise ValueError("fit_fusion needs at least one query")
    for q, (c, p, r) in enumerate(zip(cosines, p_yes, relevant, strict=True)):
        if not (len(c) == len(p) == len(r)) or len(c) == 0:
            raise ValueError(
                f"query {q}: cosines, p_yes and relevant need the same non-zero length, got "
                f"{len(c)}, {len(p)}, {len(r)}"
            )
    all_r = reranker_logit(np.concatenate([np.asarray(p) for p in p_yes]))
    all_c = np.concatenate([np.asarray(c, dtype=np.float64) for c in cosines])
    stats = {
        "reranker_mean": float(all_r.mean()),
        "reranker_std": float(all_r.std()) or 1.0,  # a constant score: any scale ranks alike
        "embedder_mean": float(all_c.mean()),
        "embedder_std": float(all_c.std()) or 1.0,
    }
    curve: dict[float, float] = {}
    for w in sorted(grid):
        f = Fusion(weight=w, embedder=embedder, reranker=reranker, **stats)
        curve[w] = precision_at_1([f.fuse(c, p) for c, p in zip(cosines, p_yes)], relevant)
    best = max(curve.values())
    weight = min(w for w, v in curve.items() if v == best)
    metrics = {
        "queries": len(cosines),
        "p@1_embedder": precision_at_1([np.asarray(c) for c in cosines], relevant),
        "p@1_reranker": precision_at_1([np.asarray(p) for p in p_yes], relevant),
        "p@1_fused": best,
    }
    fusion = Fusion(
        weight=weight, embedder=embedder, reranker=reranker, split=split, metrics=metrics, **stats
    )
    return FusionFit(fusion=fusion, curve=curve)
