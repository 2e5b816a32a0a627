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
from collections.abc import Callable, Collection, Sequence
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
    repeat earlier picks to reach ``n_requested``. ``n_flagged`` counts the candidates the
    false-negative rule flagged (judge mode), of which ``n_capped`` were kept as negatives by
    the ``max_fn_share`` cap. An empty selection (``is_empty``) means no valid negative existed.
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
    n_flagged: int = 0

    @property
    def is_empty(self) -> bool:
        """True when no negative could be selected."""
        return not self.negative_ids

    @property
    def n_capped(self) -> int:
        """Candidates the false-negative rule flagged but the cap kept as negatives."""
        return max(0, self.n_flagged - len(self.false_negative_ids))

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


def fn_cap(n_candidates: int, max_fn_share: float) -> int:
    """The most candidates the false-negative rule may remove from one query:
    ``floor(max_fn_share * n_candidates)`` (1.0: all of them, the paper's rule).

    ``fn_cap(20, 0.25) == 5``; ``fn_cap(3, 0.25) == 0``; ``fn_cap(20, 1.0) == 20``.
    """
    share = _check_number(max_fn_share, "max_fn_share", minimum=0.0)
    if share > 1.0:
        raise ValueError(f"max_fn_share: must be <= 1, got {share}")
    # a small epsilon so that 0.3 * 10 is 3, not 2.9999999999999996 -> 2
    return min(n_candidates, int(math.floor(share * n_candidates + 1e-9)))


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
    max_fn_share: float = 1.0,
    resolution: float = 0.0,
) -> Selection:
    """UniME-V2 hard-negative selection from MLLM-judge scores.

    Rule, in order:

    1. The positive (``positive_id``, if it appears among the candidates) is removed.
    2. False negatives: candidates with ``s > positive_score - beta`` are flagged (a score
       exactly at ``positive_score - beta`` is kept). At most
       ``fn_cap(n, max_fn_share)`` of the ``n`` candidates (the positive excluded) are
       removed: the highest-scored flagged ones (ties keep input order). The rest of the
       flagged stay negatives. A scorer that puts the positive below more than that share
       of its candidates is unsure of the positive (it scored the positive low, not the
       candidates high), and the rule would otherwise empty the query; 1.0 is the paper's
       rule.
    3. The rest is sorted by judge score, highest first (ties keep input order). With
       ``resolution > 0`` scores are compared in steps of ``resolution`` (``floor(s /
       resolution)``): scores in the same step are ties and keep input order, the
       retrieval order. Two engines (or dtypes, or machines) agree on P(Yes) only to about
       1e-5 in float32; without a resolution the order of near-equal scores, and so the
       chosen negatives, would depend on which one ran. With it only a score within that
       noise of a step's edge can still move (about 2 x 1e-5 / resolution of them). The cap
       of rule 2 orders the same way.
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
        max_fn_share: the largest share of a query's candidates the rule may remove.
        resolution: the step in which scores are ordered (0: exact).

    Cap example (``positive_score=0.1``, ``beta=0.01``, ``max_fn_share=0.25``): candidates
    ``a=.9 b=.5 c=.3 d=.2`` are all above 0.09 and flagged; ``fn_cap(4, 0.25) = 1``, so
    only ``a`` is removed and ``b, c, d`` stay negatives (``n_flagged=4``, ``n_capped=3``).
    """
    values = _check_common(candidate_ids, judge_scores, "judge_scores", ranks)
    pos = _check_number(positive_score, "positive_score")
    beta = _check_number(beta, "beta", minimum=0.0)
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    resolution = _check_number(resolution, "resolution", minimum=0.0)
    hardness = _hardness(values, resolution)
    threshold = pos - beta
    kept: list[int] = []
    flagged: list[int] = []
    for i, (cid, s) in enumerate(zip(candidate_ids, values)):
        if cid == positive_id:
            continue
        (flagged if s > threshold else kept).append(i)
    n_flagged = len(flagged)
    cap = fn_cap(len(flagged) + len(kept), max_fn_share)
    if len(flagged) > cap:
        by_score = sorted(flagged, key=hardness)  # stable: ties keep input order
        removed = set(by_score[:cap])
        kept += [i for i in flagged if i not in removed]
        flagged = [i for i in flagged if i in removed]
    false_negatives = [candidate_ids[i] for i in flagged]
    kept.sort(key=hardness)  # stable: ties keep input order
    order = [kept[j] for j in cyclic_order(len(kept), step)]
    n_available = len(order)
    chosen = [order[j % n_available] for j in range(k)] if order else []
    n_filled = max(0, k - n_available) if order else 0
    return _selection(
        candidate_ids, values, ranks, chosen, false_negatives, k, n_available, n_filled, n_flagged
    )


def _hardness(values: Sequence[float], resolution: float) -> Callable[[int], float]:
    """Sort key of candidate ``i``, hardest first: its score, in steps of ``resolution``."""
    if resolution <= 0:
        return lambda i: -values[i]
    return lambda i: -math.floor(values[i] / resolution)


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
    n_flagged: int = 0,
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
        n_flagged=n_flagged,
    )


def selection_reason(
    sel: Selection, positive_score: float, beta: float, n_candidates: int
) -> str | None:
    """Why the false-negative rule emptied or capped one query, in words; None when it did
    neither. ``n_candidates`` counts the query's candidates, the positive excluded.

    Examples: ``positive scored 0.031 (threshold s_pos - beta = 0.021): all 20 candidates
    within beta, filtered as false negatives``; ``positive scored 0.031 (...): 18 of 20
    candidates within beta; the 5 highest filtered, 13 kept as negatives (max_fn_share)``.
    """
    threshold = positive_score - beta
    head = f"positive scored {positive_score:.3f} (threshold s_pos - beta = {threshold:.3f})"
    if sel.is_empty:
        if n_candidates == 0:
            return "no candidate left after retrieval (and its easy / similarity filters)"
        return f"{head}: all {n_candidates} candidates within beta, filtered as false negatives"
    if sel.n_capped:
        return (
            f"{head}: {sel.n_flagged} of {n_candidates} candidates within beta; the "
            f"{len(sel.false_negative_ids)} highest filtered, {sel.n_capped} kept as negatives "
            "(max_fn_share)"
        )
    return None
