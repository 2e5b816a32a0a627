"""Focal-style reweighting of hard samples (KaLM-Embedding-V2).

A row's InfoNCE term ``-log p_i`` (``p_i`` the softmax probability of its positive) is
multiplied by ``(1 - p_i) ** gamma``: rows the model already gets right (``p_i`` near 1)
fade, hard rows keep their weight. ``gamma = 0`` is plain InfoNCE. As in the focal loss the
weight is part of the graph (its gradient is the focal loss's own).
"""

from __future__ import annotations

from torch import Tensor

from uniembed.losses._checks import check_rank


def focal_terms(log_p_pos: Tensor, gamma: float) -> Tensor:
    """``(n,)`` per-row losses ``-(1 - p_i)^gamma * log p_i`` from ``log_p_pos (n,)``."""
    check_rank("log_p_pos", log_p_pos, 1, "(n,)")
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    if gamma == 0:
        return -log_p_pos
    weight = (1.0 - log_p_pos.exp()).clamp(min=0.0) ** gamma
    return -weight * log_p_pos
