"""A learnable softmax temperature (RzenEmbed), kept in log space and clamped.

``tau = clamp(exp(log_tau), min_value, max_value)``; with ``learnable=False`` it is a
constant (a buffer), so the same module serves both settings and a checkpoint of either
loads the same way.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from uniembed.losses._checks import check_positive


class Temperature(nn.Module):
    """The temperature ``tau`` of a contrastive loss: a scalar tensor, learnable or fixed.

    Args:
        initial: the starting ``tau`` (> 0).
        learnable: True makes ``log_tau`` an ``nn.Parameter`` that the optimiser updates.
        min_value, max_value: the clamp applied on every read (gradient 0 outside it).
    """

    def __init__(
        self,
        initial: float,
        learnable: bool = False,
        min_value: float = 0.005,
        max_value: float = 1.0,
    ) -> None:
        super().__init__()
        check_positive("temperature", initial)
        check_positive("min_temperature", min_value)
        if not min_value <= initial <= max_value:
            raise ValueError(
                f"temperature {initial} must lie in [min {min_value}, max {max_value}]"
            )
        self.learnable = bool(learnable)
        self.min_value, self.max_value = float(min_value), float(max_value)
        log_tau = torch.tensor(math.log(initial), dtype=torch.float32)
        if self.learnable:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

    def forward(self) -> Tensor:
        """The current ``tau``: a 0-d float32 tensor (with a gradient when learnable)."""
        return self.log_tau.exp().clamp(self.min_value, self.max_value)

    def value(self) -> float:
        """The current ``tau`` as a float (for logging)."""
        return float(self().detach())
