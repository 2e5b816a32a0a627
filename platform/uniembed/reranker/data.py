"""The reranker's training chats, built per mined row (DESIGN §1, UniME-V2 reranker).

Per row (``TUNE_SCHEMA`` dicts from ``training.rows``):

1. pairwise chat with the positive -> ``Yes``;
2. pairwise chats with ``pairwise_negatives`` negatives -> ``No`` (1: the hardest, highest
   judge score; n > 1: n picks spread evenly over the hardness order, the hardest first);
3. listwise chat over the positive and the ``list_size`` hardest negatives, the positive at
   a seeded random slot -> ``Ans: (slot + 1)``.

Rows with fewer negatives than ``list_size`` get a listwise chat over what they have
(``short_list``); a row without negatives trains only the pairwise positive
(``no_negatives``). Both are counted in :class:`ChatCounts` and named in the run's
``rerank_data.json``: nothing is dropped silently. Pure functions, no model.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from uniembed.data import schema as S
from uniembed.reranker.listwise import listwise_answer
from uniembed.reranker.prompts import NO, YES

ChatKind = Literal["pairwise_pos", "pairwise_neg", "listwise"]
LIST_SIZE = 5  # hard negatives in the listwise chat (DESIGN §1)


@dataclass(frozen=True)
class RerankItem:
    """One side of a chat: text and/or an image URI (local path or s3://)."""

    text: str | None = None
    image: str | None = None


@dataclass(frozen=True)
class RerankChat:
    """One training chat: the prompt's inputs and the answer the model must give."""

    kind: ChatKind
    query: RerankItem
    candidates: tuple[RerankItem, ...]
    answer: str
    source: str  # "file:row (query id)", for error messages


@dataclass(frozen=True)
class ChatPlan:
    """A row's chats, and what was short about the row."""

    chats: tuple[RerankChat, ...]
    short_list: bool  # the listwise chat has fewer than list_size negatives
    no_negatives: bool  # only the pairwise positive was built


@dataclass
class ChatCounts:
    """Counts over rows, for the job log and ``rerank_data.json``."""

    rows: int = 0
    chats: dict[str, int] = field(
        default_factory=lambda: {"pairwise_pos": 0, "pairwise_neg": 0, "listwise": 0}
    )
    short_list: list[str] = field(default_factory=list)  # query ids
    no_negatives: list[str] = field(default_factory=list)

    def add(self, query_id: str, plan: ChatPlan) -> None:
        """Count one row's plan."""
        self.rows += 1
        for chat in plan.chats:
            self.chats[chat.kind] += 1
        if plan.short_list:
            self.short_list.append(query_id)
        if plan.no_negatives:
            self.no_negatives.append(query_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "rows": self.rows,
            "chats": dict(self.chats),
            "n_short_list": len(self.short_list),
            "n_no_negatives": len(self.no_negatives),
            "short_list": list(self.short_list),
            "no_negatives": list(self.no_negatives),
        }


def hardest_negatives(scores: list[float] | None, n_negatives: int, k: int) -> list[int]:
    """Indices of the ``k`` hardest negatives: highest judge score first, ties (and unscored
    rows) in stored order, which is the mine job's selection order."""
    values = list(scores) if scores else [0.0] * n_negatives
    if len(values) != n_negatives:
        raise ValueError(f"{len(values)} scores for {n_negatives} negatives")
    order = sorted(range(n_negatives), key=lambda j: (-float(values[j]), j))
    return order[:k]


def spread_picks(order: list[int], n: int) -> list[int]:
    """``n`` entries of ``order`` at evenly spaced positions, its first entry first.

    ``spread_picks([4, 2, 0, 1, 3], 2) == [4, 0]``; with ``n >= len(order)``, all of it.
    """
    if n >= len(order):
        return list(order)
    return [order[(j * len(order)) // n] for j in range(n)]


def listwise_slot(query_id: str, seed: int, size: int) -> int:
    """The positive's 0-based slot in a list of ``size``: random, fixed by (seed, query id),
    so a resumed or re-run job builds the same chats."""
    rng = np.random.default_rng([seed, zlib.crc32(query_id.encode())])
    return int(rng.integers(size))


def build_chats(
    row: dict[str, Any], list_size: int = LIST_SIZE, seed: int = 0, pairwise_negatives: int = 1
) -> ChatPlan:
    """The chats of one training row (``TUNE_SCHEMA`` dict).

    ``list_size = 0`` turns the listwise chat off; ``pairwise_negatives`` is the number of
    pairwise "No" chats (see :func:`spread_picks`). Raises ValueError naming the row when it
    has no query or no positive.
    """
    if list_size < 0:
        raise ValueError(f"list_size must be >= 0, got {list_size}")
    if pairwise_negatives < 1:
        raise ValueError(f"pairwise_negatives must be >= 1, got {pairwise_negatives}")
    qid = str(row[S.QUERY_ID])
    src = f"{row.get(S.SOURCE) or '?'} (query {qid})"
    text = " ".join(
        p.strip() for p in (row.get(S.QUERY_INSTRUCTION), row[S.QUERY_TEXT]) if p and p.strip()
    )
    query = RerankItem(text or None, row[S.QUERY_IMAGE] or None)
    positive = RerankItem(row[S.POS_TEXT] or None, row[S.POS_IMAGE] or None)
    if query.text is None and query.image is None:
        raise ValueError(f"{src}: the query has neither text nor image")
    if positive.text is None and positive.image is None:
        raise ValueError(f"{src}: the positive has neither text nor image")
    texts, images = list(row[S.NEG_TEXTS] or []), list(row[S.NEG_IMAGES] or [])
    if len(images) != len(texts):
        raise ValueError(f"{src}: {len(images)} negative images for {len(texts)} negatives")
    negatives = [RerankItem(t or None, i or None) for t, i in zip(texts, images)]
    chats = [RerankChat("pairwise_pos", query, (positive,), YES, src)]
    if not negatives:
        return ChatPlan(tuple(chats), short_list=False, no_negatives=True)
    order = hardest_negatives(row.get(S.NEG_SCORES), len(negatives), len(negatives))
    for j in spread_picks(order, pairwise_negatives):
        chats.append(RerankChat("pairwise_neg", query, (negatives[j],), NO, src))
    if list_size == 0:
        return ChatPlan(tuple(chats), short_list=False, no_negatives=False)
    listed = [negatives[j] for j in order[:list_size]]
    slot = listwise_slot(qid, seed, len(listed) + 1)
    candidates = tuple(listed[:slot] + [positive] + listed[slot:])
    chats.append(RerankChat("listwise", query, candidates, listwise_answer(slot), src))
    return ChatPlan(tuple(chats), short_list=len(listed) < list_size, no_negatives=False)


def plan_rows(
    rows: list[dict[str, Any]],
    list_size: int = LIST_SIZE,
    seed: int = 0,
    pairwise_negatives: int = 1,
) -> tuple[list[RerankChat], ChatCounts]:
    """All chats of ``rows`` in row order, and their counts."""
    chats: list[RerankChat] = []
    counts = ChatCounts()
    for row in rows:
        plan = build_chats(row, list_size, seed, pairwise_negatives)
        chats.extend(plan.chats)
        counts.add(str(row[S.QUERY_ID]), plan)
    return chats, counts
