"""Online hard-negative mixing (KaLM-Embedding-V2, after MoCHi): negatives synthesised in
embedding space from a row's hardest real ones.

For row ``i`` with kept negatives ranked by similarity ``h_1, h_2, ...`` (hardest first),
synthetic negative ``m`` (``m = 1 .. num_mixed``) is::

    x_m = normalize(lam * h_1 + (1 - lam) * h_{m+1})

It is detached (a fixed point the query is pushed away from; no gradient flows into the
negatives it was made of). A row with fewer than ``m + 1`` kept negatives gets no ``x_m``
(its slot is masked out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from uniembed.losses._checks import check_dim, check_rank


def mix_hard_negatives(
    sim: Tensor, vectors: Tensor, keep: Tensor, num_mixed: int, lam: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Synthesise ``num_mixed`` negatives per row.

    Args:
        sim: ``(n, c)`` similarities, the positive in column 0 (never mixed).
        vectors: ``(n, c, d)`` the candidate vectors in the same order.
        keep: ``(n, c)`` bool, the candidates that count as negatives (column 0 ignored).
        num_mixed: synthetic negatives per row (0: none).
        lam: weight of the hardest negative in each mix, in ``[0, 1]``.

    Returns:
        ``(mixed (n, num_mixed, d), valid (n, num_mixed))``, ``mixed`` L2-normalised and
        detached.
    """
    check_rank("sim", sim, 2, "(n, c)")
    check_rank("vectors", vectors, 3, "(n, c, d)")
    check_dim("vectors", vectors, 1, sim.shape[1], "the candidates of sim")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"mixing lam must lie in [0, 1], got {lam}")
    n, c, d = vectors.shape
    if num_mixed <= 0 or c <= 1:
        return vectors.new_zeros(n, 0, d), torch.zeros(n, 0, dtype=torch.bool, device=sim.device)
    with torch.no_grad():
        negs = keep.clone()
        negs[:, 0] = False
        ranked = sim.detach().masked_fill(~negs, float("-inf"))
        m = min(num_mixed, c - 2) if c > 2 else 0
        top = min(m + 1, c)
        scores, idx = ranked.topk(top, dim=1)  # (n, top), hardest first
        rows = torch.arange(n, device=sim.device).unsqueeze(1)
        picked = vectors.detach().float()[rows, idx]  # (n, top, d)
        hardest, others = picked[:, :1], picked[:, 1:top]
        mixed = F.normalize(lam * hardest + (1.0 - lam) * others, dim=-1)
        valid = torch.isfinite(scores[:, 1:top]) & torch.isfinite(scores[:, :1])
        if mixed.shape[1] < num_mixed:  # fewer candidates than asked: pad, masked out
            pad = num_mixed - mixed.shape[1]
            mixed = torch.cat([mixed, mixed.new_zeros(n, pad, d)], dim=1)
            valid = torch.cat([valid, valid.new_zeros(n, pad)], dim=1)
    return mixed, valid
