"""Training building blocks: cross-rank gather with gradients and GradCache."""

from __future__ import annotations

from uniembed.training.gather import gather_with_grad, is_distributed, rank, world_size
from uniembed.training.gradcache import GradCache, split_batch

__all__ = [
    "GradCache",
    "gather_with_grad",
    "is_distributed",
    "rank",
    "split_batch",
    "world_size",
]
