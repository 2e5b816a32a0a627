"""Hard-negative selection: pure functions over one query's candidates and their scores.

Two modes:

- :func:`select_with_judge` (UniME-V2): MLLM judge scores filter false negatives, then
  cyclical sampling over the score-sorted remainder picks diverse hard negatives.
- :func:`select_by_similarity` (judge-free, UniME-style): embedding similarities with the
  margin / range / score-bound options of sentence-transformers' ``mine_hard_negatives``.

Both return a :class:`Selection`. No Ray, no torch: the pipelines map these over rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

# Paper: "cyclical sampling strategy with 5-step intervals".
DEFAULT_CYCLE_STEP = 5


@dataclass(frozen=True)
class Selection:
    """Hard negatives chosen for one query.

    ``negative_ids[j]`` has score ``scores[j]`` (judge score or similarity, by mode), sits at
    ``positions[j]`` in the input candidate list and has retrieval rank ``ranks[j]`` (the
    ``ranks`` argument when given, else the position). ``false_negative_ids`` are the
    candidates removed as too close to the positive. ``n_available`` counts the valid
    negatives before any fill; ``filled`` / ``n_filled`` say whether, and how many, entries
    repeat earlier picks to reach ``n_requested``. An empty selection (``is_empty``) means no
    valid negative existed.
    """

    negative_ids: tuple[str, ...]
    scores: tuple[float, ...]
    positions: tuple[int, ...]
    ranks: tuple[int, ...]
    false_negative_ids: tuple[str, ...]
    n_requested: int
    n_available: int
    filled: bool = False
    n_filled: int = 0

    @property
    def is_empty(self) -> bool:
        """True when no negative could be selected."""
        return not self.negative_ids

    def __len__(self) -> int:
        return len(self.negative_ids)


def _check_common(
    candidate_ids: Sequence[str],
    scores: Sequence[float],
    scores_name: str,
    ranks: Sequence[int] | None,
) -> list[float]:
    if isinstance(candidate_ids, str):
        raise ValueError("candidate_ids: expected a sequence of ids, got a single string")
    if len(candidate_ids) != len(scores):
        raise ValueError(
            f"{scores_name}: {len(scores)} scores for {len(candidate_ids)} candidate_ids"
        )
    if ranks is not None and len(ranks) != len(candidate_ids):
        raise ValueError(f"ranks: {len(ranks)} ranks for {len(candidate_ids)} candidate_ids")
    seen: dict[str, int] = {}
    for i, cid in enumerate(candidate_ids):
        if cid in seen:
            raise ValueError(f"candidate_ids[{i}]: {cid!r} repeats candidate_ids[{seen[cid]}]")
        seen[cid] = i
    values = [float(s) for s in scores]
    for i, s in enumerate(values):
        if math.isnan(s):
            raise ValueError(f"{scores_name}[{i}]: score of {candidate_ids[i]!r} is NaN")
    return values


def _check_number(value: float, name: str, *, minimum: float | None = None) -> float:
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name}: must not be NaN")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def cyclic_order(n: int, step: int = DEFAULT_CYCLE_STEP) -> list[int]:
    """Positions 0..n-1 visited with stride ``step``, restarting one further each pass.

    ``cyclic_order(12, 5) == [0, 5, 10, 1, 6, 11, 2, 7, 3, 8, 4, 9]``. Taking a prefix of
    this order from a list sorted hardest-first spreads the picks over the whole hardness
    range instead of only its head.
    """
    if step < 1:
        raise ValueError(f"step: must be >= 1, got {step}")
    return [i for start in range(min(step, n)) for i in range(start, n, step)]


def select_with_judge(
    candidate_ids: Sequence[str],
    judge_scores: Sequence[float],
    positive_score: float,
    k: int = 10,
    beta: float = 0.01,
    positive_id: str | None = None,
    *,
    step: int = DEFAULT_CYCLE_STEP,
    ranks: Sequence[int] | None = None,
) -> Selection:
    """UniME-V2 hard-negative selection from MLLM-judge scores.

    Rule, in order:

    1. The positive (``positive_id``, if it appears among the candidates) is removed.
    2. False negatives: candidates with ``s > positive_score - beta`` are removed (a score
       exactly at ``positive_score - beta`` is kept).
    3. The rest is sorted by judge score, highest first (ties keep input order).
    4. Cyclical sampling with stride ``step`` (paper: 5): take sorted positions
       0, step, 2*step, ..., then 1, 1+step, ..., then 2, ... (see :func:`cyclic_order`)
       until ``k`` are taken. The result keeps that sampling order, so its first entry is
       the hardest negative and any prefix is spread over the hardness range.
    5. Fewer than ``k`` left: all are taken once, then the same order repeats from its start
       until ``k`` (``filled=True``, ``n_filled = k - n_available``). The positive and the
       false negatives are never used to fill.
    6. None left: an empty selection (``is_empty``). The paper instead draws random
       candidates scored 1.0; we do not invent labels, the caller decides (e.g. skip the row).

    Worked example (``positive_score=0.9``, ``beta=0.01``, ``k=4``, ``step=5``): candidates
    ``a..l`` scored ``a=.97 b=.50 c=.92 d=.80 e=.45 f=.75 g=.40 h=.70 i=.35 j=.65 k=.60
    l=.55``. ``a`` and ``c`` exceed 0.89 and are false negatives. Sorted, the rest is
    ``d f h j k l b e g i`` (0.80 down to 0.35); cyclic positions 0, 5, 1, 6 give
    ``d(.80), l(.55), f(.75), b(.50)``. With only ``d, f, h`` valid and ``k=4`` the result
    is ``d, f, h, d`` with ``n_filled=1``.

    Args:
        candidate_ids: unique candidate ids of one query (e.g. its retrieved top 50).
        judge_scores: judge score per candidate (P(Yes)).
        positive_score: the judge score of the query–positive pair.
        k: negatives to return (paper: 10 stored, 8 used in training).
        beta: false-negative margin below the positive's score (paper: 0.01).
        positive_id: the positive's id, excluded if it appears among the candidates.
        step: the cyclical sampling stride.
        ranks: retrieval rank per candidate, reported for the chosen ones.
    """
    values = _check_common(candidate_ids, judge_scores, "judge_scores", ranks)
    pos = _check_number(positive_score, "positive_score")
    beta = _check_number(beta, "beta", minimum=0.0)
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    threshold = pos - beta
    kept: list[int] = []
    false_negatives: list[str] = []
    for i, (cid, s) in enumerate(zip(candidate_ids, values)):
        if cid == positive_id:
            continue
        if s > threshold:
            false_negatives.append(cid)
        else:
            kept.append(i)
    kept.sort(key=lambda i: -values[i])  # stable: ties keep input order
    order = [kept[j] for j in cyclic_order(len(kept), step)]
    n_available = len(order)
    chosen = [order[j % n_available] for j in range(k)] if order else []
    n_filled = max(0, k - n_available) if order else 0
    return _selection(
        candidate_ids, values, ranks, chosen, false_negatives, k, n_available, n_filled
    )


def select_by_similarity(
    candidate_ids: Sequence[str],
    sims: Sequence[float],
    pos_sim: float,
    num_negatives: int = 3,
    *,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    sampling_strategy: Literal["top", "random"] = "top",
    seed: int = 0,
    positive_id: str | None = None,
    ranks: Sequence[int] | None = None,
    known_positive_ids: Collection[str] = (),
) -> Selection:
    """Judge-free selection by embedding similarity, with sentence-transformers' options.

    The options mean what they mean in ``sentence_transformers.util.mine_hard_negatives``:

    1. The positive (``positive_id``) is removed; the rest is ordered by similarity, highest
       first; ``range_max`` keeps only the first ``range_max`` of that order.
       ``known_positive_ids`` (candidates the data marks as also correct, e.g. identical
       definitions) are never negatives: they are reported as ``false_negative_ids``.
    2. Removed as too close to the positive (reported as ``false_negative_ids``):
       ``absolute_margin``: ``sim + absolute_margin > pos_sim``;
       ``relative_margin``: ``sim > pos_sim - abs(pos_sim) * relative_margin``;
       ``max_score``: ``sim > max_score``. Removed as too easy: ``min_score``: ``sim < min_score``.
    3. ``range_min`` skips the first ``range_min`` survivors (the most similar ones).
    4. ``"top"`` takes the first ``num_negatives`` survivors; ``"random"`` draws
       ``num_negatives`` of them with ``random.Random(seed)`` (give each query its own seed)
       and returns them most similar first.

    Unlike the judge mode nothing is filled: with too few survivors the selection is shorter
    than ``num_negatives`` (as sentence-transformers does), and ``n_available`` says so.
    """
    values = _check_common(candidate_ids, sims, "sims", ranks)
    pos = _check_number(pos_sim, "pos_sim")
    if num_negatives < 1:
        raise ValueError(f"num_negatives: must be >= 1, got {num_negatives}")
    if range_min < 0:
        raise ValueError(f"range_min: must be >= 0, got {range_min}")
    if range_max is not None and num_negatives > range_max - range_min:
        raise ValueError(
            f"range_max: {range_max} - range_min {range_min} leaves fewer than "
            f"num_negatives={num_negatives} candidates"
        )
    for name, margin in (
        ("absolute_margin", absolute_margin),
        ("relative_margin", relative_margin),
    ):
        if margin is not None:
            _check_number(margin, name, minimum=0.0)
    for name, bound in (("max_score", max_score), ("min_score", min_score)):
        if bound is not None:
            _check_number(bound, name)
    if max_score is not None and min_score is not None and min_score > max_score:
        raise ValueError(f"min_score: {min_score} is above max_score {max_score}")
    if sampling_strategy not in ("top", "random"):
        raise ValueError(f"sampling_strategy: {sampling_strategy!r} is not 'top' or 'random'")

    known = set(known_positive_ids)
    order = [i for i, cid in enumerate(candidate_ids) if cid != positive_id]
    order.sort(key=lambda i: -values[i])
    if range_max is not None:
        order = order[:range_max]
    survivors: list[int] = []
    false_negatives: list[str] = []
    for i in order:
        s = values[i]
        if candidate_ids[i] in known:
            false_negatives.append(candidate_ids[i])
            continue
        too_close = (
            (absolute_margin is not None and s + absolute_margin > pos)
            or (relative_margin is not None and s > pos - abs(pos) * relative_margin)
            or (max_score is not None and s > max_score)
        )
        if too_close:
            false_negatives.append(candidate_ids[i])
        elif min_score is None or s >= min_score:
            survivors.append(i)
    survivors = survivors[range_min:]
    if sampling_strategy == "top" or len(survivors) <= num_negatives:
        chosen = survivors[:num_negatives]
    else:
        picked = random.Random(seed).sample(range(len(survivors)), num_negatives)
        chosen = [survivors[j] for j in sorted(picked)]
    return _selection(
        candidate_ids, values, ranks, chosen, false_negatives, num_negatives, len(survivors), 0
    )


def _selection(
    candidate_ids: Sequence[str],
    values: list[float],
    ranks: Sequence[int] | None,
    chosen: list[int],
    false_negatives: list[str],
    n_requested: int,
    n_available: int,
    n_filled: int,
) -> Selection:
    return Selection(
        negative_ids=tuple(candidate_ids[i] for i in chosen),
        scores=tuple(values[i] for i in chosen),
        positions=tuple(chosen),
        ranks=tuple(int(ranks[i]) if ranks is not None else i for i in chosen),
        false_negative_ids=tuple(false_negatives),
        n_requested=n_requested,
        n_available=n_available,
        filled=n_filled > 0,
        n_filled=n_filled,
    )
