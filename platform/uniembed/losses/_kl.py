"""Row-wise KL divergence that tolerates masked (probability-zero) entries."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_log_softmax(logits: Tensor, valid: Tensor) -> Tensor:
    """``log_softmax`` over the ``valid`` entries of each row; invalid entries get 0, not -inf.

    A row with no valid entry comes back all zeros (its probabilities are all 0 below), so
    nothing downstream sees ``-inf - -inf`` or ``0 * -inf`` and no NaN reaches the gradient.
    """
    masked = logits.masked_fill(~valid, float("-inf"))
    any_valid = valid.any(dim=-1, keepdim=True)
    # A fully masked row would be softmax over all -inf = NaN: give it finite dummies instead.
    masked = torch.where(any_valid, masked, torch.zeros_like(masked))
    log_p = torch.log_softmax(masked, dim=-1)
    return log_p.masked_fill(~valid, 0.0)


def masked_kl(log_p: Tensor, log_q: Tensor, valid: Tensor) -> Tensor:
    """``sum_j p_j (log p_j - log q_j)`` over the valid entries of each row: shape ``(..., )``.

    ``log_p`` and ``log_q`` come from :func:`masked_log_softmax` with the same ``valid``.
    """
    p = log_p.exp().masked_fill(~valid, 0.0)
    return (p * (log_p - log_q)).sum(dim=-1)
