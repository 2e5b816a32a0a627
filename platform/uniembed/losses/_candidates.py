"""The candidate matrix shared by the InfoNCE-family losses (rzen, kalm).

Row ``i`` scores its positive, every other row's positive (in-batch negatives) and its own
mined negatives. The positive is put first, so the target of every row is column 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from uniembed.losses._checks import check_dim, check_mask, check_rank


@dataclass(frozen=True)
class Candidates:
    """Similarities of each query to its candidates, positive first.

    Fields:
        sim: ``(n, 1 + (n - 1) + k)`` similarities: the positive, the other rows' positives
            in row order, then the mined negatives.
        valid: same shape, bool; ``False`` for padded mined slots (column 0 is always True).
        vectors: ``(n, 1 + (n - 1) + k, d)`` the candidate vectors in the same order (used
            to find duplicates of the positive and to mix negatives).
        query: ``(n, d)`` the query vectors the similarities were taken with.
    """

    sim: Tensor
    valid: Tensor
    vectors: Tensor
    query: Tensor


def candidates(
    query: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    mask: Tensor | None = None,
    normalize: bool = True,
) -> Candidates:
    """Build the :class:`Candidates` of ``query (n, d)``, ``positive (n, d)`` and optional
    ``negatives (n, k, d)`` with ``mask (n, k)`` (True = real negative)."""
    check_rank("query", query, 2, "(n, d)")
    check_rank("positive", positive, 2, "(n, d)")
    n, d = query.shape
    check_dim("positive", positive, 0, n, "the number of query rows")
    check_dim("positive", positive, 1, d, "the embedding size of query")
    if negatives is None:
        negatives = query.new_zeros(n, 0, d)
        if mask is not None:
            raise ValueError("mask: given without negatives")
    check_rank("negatives", negatives, 3, "(n, k, d)")
    check_dim("negatives", negatives, 0, n, "the number of query rows")
    check_dim("negatives", negatives, 2, d, "the embedding size of query")
    k = negatives.shape[1]
    mask = check_mask("mask", mask, (n, k))
    if mask is None:
        mask = torch.ones(n, k, dtype=torch.bool, device=query.device)
    # float32: at tau = 0.02 a bf16 similarity would be off by several logits.
    q, p, h = query.float(), positive.float(), negatives.float()
    if normalize:
        q, p, h = F.normalize(q, dim=-1), F.normalize(p, dim=-1), F.normalize(h, dim=-1)
    # Row i: its own positive, then the positives of rows j != i in order.
    order = torch.arange(n, device=q.device)
    others = order.unsqueeze(0).expand(n, n)
    off_diag = others[~torch.eye(n, dtype=torch.bool, device=q.device)].view(n, max(n - 1, 0))
    cols = torch.cat([order.unsqueeze(1), off_diag], dim=1)  # (n, n)
    in_batch = p[cols]  # (n, n, d)
    vectors = torch.cat([in_batch, h], dim=1)  # (n, n + k, d)
    sim = torch.einsum("nd,ncd->nc", q, vectors)
    valid = torch.cat([torch.ones(n, n, dtype=torch.bool, device=q.device), mask], dim=1)
    return Candidates(sim, valid, vectors, q)
