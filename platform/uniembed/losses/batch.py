"""What a stage-2 loss is handed by the trainer, and what it declares about itself.

The trainer gathers every rank's representations into one :class:`PairBatch` and calls
``loss.on_batch(batch)``; it reads the loss's class attributes to know whether to encode the
mined negatives and whether the rows must carry judge scores. A new loss is a class in
``losses/`` (with these attributes and ``on_batch``) and a line in ``LOSSES``; nothing in
``training/`` changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from torch import Tensor


@dataclass(frozen=True)
class PairBatch:
    """The gathered global batch of a stage-2 step.

    Fields:
        query: ``(n, d)`` query representations.
        positive: ``(n, d)`` the positive of each query.
        negatives: ``(n, k, d)`` the mined negatives of each query (zeros in empty slots;
            ``k = 0`` when the loss does not encode them).
        mask: ``(n, k)`` bool, ``True`` for real negatives.
        scores: ``(n, 1 + k)`` judge scores, positive first.
    """

    query: Tensor
    positive: Tensor
    negatives: Tensor
    mask: Tensor
    scores: Tensor


class PairLoss(Protocol):
    """A stage-2 loss as the trainer sees it."""

    #: Whether the mined negatives are encoded at all (UniME picks its negatives in-batch).
    encodes_negatives: ClassVar[bool]
    #: Whether training rows must carry judge scores (rows without them are refused).
    needs_scores: ClassVar[bool]
    #: The smallest ``loss.num_negatives`` the loss accepts.
    min_negatives: ClassVar[int]

    def on_batch(self, batch: PairBatch) -> Tensor:
        """The scalar loss of the gathered batch."""
        ...


def with_mined_negatives(loss: Callable[..., Tensor], batch: PairBatch) -> Tensor:
    """``loss(query, positive[, negatives, mask])``: the call of a loss whose forward takes
    the mined negatives as optional ``(n, k, d)`` / ``(n, k)`` arguments (in-batch only when
    the batch has none)."""
    if batch.negatives.shape[1] == 0:
        return loss(batch.query, batch.positive)
    return loss(batch.query, batch.positive, batch.negatives, batch.mask)
