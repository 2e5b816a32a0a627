"""Hardness weighting of negatives (RzenEmbed, after LLaVE).

Each negative's term in the softmax denominator is multiplied by ``w_ic = exp(alpha *
sg(s_ic))``: the more similar a negative already is to the query, the more it weighs.
In logits that is an additive bias ``alpha * sg(s_ic)`` on every negative column; the
positive (column 0) keeps its logit. ``sg`` is stop-gradient: the weight steers the loss
but is not itself a path for the gradient. ``alpha = 0`` is plain InfoNCE.
"""

from __future__ import annotations

from torch import Tensor

from uniembed.losses._checks import check_rank


def hardness_bias(sim: Tensor, alpha: float) -> Tensor:
    """``(n, c)`` additive logit bias: ``alpha * sg(sim)``, 0 on the positive (column 0).

    ``sim`` is ``(n, c)`` with the positive first (see ``losses/_candidates.py``).
    """
    check_rank("sim", sim, 2, "(n, c)")
    bias = alpha * sim.detach()
    bias[:, :1] = 0.0
    return bias
