"""Argument checks shared by the losses: every error names the argument at fault."""

from __future__ import annotations

import torch
from torch import Tensor


def check_rank(name: str, t: Tensor, ndim: int, shape_doc: str) -> None:
    """Raise ValueError unless ``t`` is a tensor with ``ndim`` dimensions."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {shape_doc}, got {type(t)}")
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected shape {shape_doc}, got {tuple(t.shape)}")


def check_dim(name: str, t: Tensor, dim: int, expected: int, what: str) -> None:
    """Raise ValueError unless ``t.shape[dim] == expected``; ``what`` says where it comes from."""
    if t.shape[dim] != expected:
        raise ValueError(
            f"{name}: size {t.shape[dim]} at dim {dim} does not match {what} ({expected}); "
            f"shape is {tuple(t.shape)}"
        )


def check_mask(name: str, mask: Tensor | None, shape: tuple[int, ...]) -> Tensor | None:
    """Validate an optional boolean mask of ``shape`` (True = keep)."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name}: expected a bool tensor of shape {shape}, got {type(mask)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name}: expected dtype torch.bool, got {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(mask.shape)}")
    return mask


def check_positive(name: str, value: float) -> None:
    """Raise ValueError unless ``value > 0`` (temperatures, margins that divide)."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
