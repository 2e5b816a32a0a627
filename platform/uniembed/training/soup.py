"""Weight averaging of fine-tuned checkpoints: model soups and delta-guided fusion.

Both are pure functions of state dicts (name -> tensor) of one architecture:

* **soup** (Wortsman et al., "Model soups", 2022): ``theta = sum_m w_m theta_m`` with
  weights summing to 1 (uniform by default).
* **delta-guided fusion** (CoDiEmb, 2025): each checkpoint's change from the shared base,
  ``delta_m = theta_m - theta_0``, is kept in proportion to its size, element by element::

      w_m   = |delta_m|^p / sum_m' |delta_m'|^p          (1 / M where every delta is 0)
      theta = theta_0 + sum_m w_m delta_m

  so a weight one fine-tune moved and the other barely touched keeps the move instead of
  halving it, as a plain average would.

Tensors that are not floating point (position ids, counters) must agree across the
checkpoints and are copied from the first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

StateDict = Mapping[str, Tensor]


def _check_same_keys(states: Sequence[StateDict], what: str) -> None:
    if not states:
        raise ValueError(f"{what}: no checkpoints given")
    keys = set(states[0])
    for i, s in enumerate(states[1:], start=1):
        if set(s) != keys:
            diff = sorted(set(s) ^ keys)[:5]
            raise ValueError(f"{what}: checkpoint {i} has other tensors than checkpoint 0: {diff}")
        for k in keys:
            if s[k].shape != states[0][k].shape:
                raise ValueError(
                    f"{what}: tensor {k} of checkpoint {i} has shape {tuple(s[k].shape)}, "
                    f"checkpoint 0 {tuple(states[0][k].shape)}"
                )


def _non_float(key: str, tensors: Sequence[Tensor], what: str) -> Tensor:
    for i, t in enumerate(tensors[1:], start=1):
        if not torch.equal(t, tensors[0]):
            raise ValueError(f"{what}: non-float tensor {key} differs in checkpoint {i}")
    return tensors[0].clone()


def average_state_dicts(
    states: Sequence[StateDict], weights: Sequence[float] | None = None
) -> dict[str, Tensor]:
    """The soup of ``states``: their weighted average (uniform when ``weights`` is None)."""
    _check_same_keys(states, "soup")
    if weights is None:
        weights = [1.0 / len(states)] * len(states)
    if len(weights) != len(states):
        raise ValueError(f"soup: {len(weights)} weights for {len(states)} checkpoints")
    if abs(sum(weights) - 1.0) > 1e-6 or min(weights) < 0:
        raise ValueError(f"soup: weights must be >= 0 and sum to 1, got {list(weights)}")
    out: dict[str, Tensor] = {}
    for key, first in states[0].items():
        tensors = [s[key] for s in states]
        if not first.is_floating_point():
            out[key] = _non_float(key, tensors, "soup")
            continue
        acc = torch.zeros_like(first, dtype=torch.float64)
        for w, t in zip(weights, tensors):
            acc += w * t.double()
        out[key] = acc.to(first.dtype)
    return out


def delta_fusion(
    base: StateDict, states: Sequence[StateDict], power: float = 1.0
) -> dict[str, Tensor]:
    """Delta-guided fusion of ``states`` fine-tuned from ``base`` (see the module docstring)."""
    _check_same_keys([base, *states], "delta fusion")
    if power <= 0:
        raise ValueError(f"delta fusion: power must be > 0, got {power}")
    out: dict[str, Tensor] = {}
    for key, b in base.items():
        tensors = [s[key] for s in states]
        if not b.is_floating_point():
            out[key] = _non_float(key, tensors, "delta fusion")
            continue
        deltas = torch.stack([t.double() - b.double() for t in tensors])  # (M, ...)
        mag = deltas.abs() ** power
        total = mag.sum(dim=0, keepdim=True)
        uniform = torch.full_like(mag, 1.0 / len(states))
        w = torch.where(total > 0, mag / total.clamp(min=1e-300), uniform)
        out[key] = (b.double() + (w * deltas).sum(dim=0)).to(b.dtype)
    return out
