"""UniME-V2: soft-label alignment of embedding similarities with MLLM-judge scores."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniembed.losses._checks import check_dim, check_mask, check_positive, check_rank
from uniembed.losses._kl import masked_kl, masked_log_softmax
from uniembed.losses.batch import PairBatch


class SoftLabelLoss(nn.Module):
    r"""Symmetric KL between the embedder's and the judge's distributions over candidates.

    Inputs:
        query: ``(n, d)`` query embeddings.
        candidates: ``(n, c, d)`` per-query candidates, positive first: ``[e_pos, e_h1, ...]``.
        judge_scores: ``(n, c)`` judge scores ``s`` in the same order (``query_pos_scores``
            then ``hard_negatives_scores``); treated as constants.
        mask: optional ``(n, c)`` bool, ``True`` for real candidates; padded or missing
            negatives are ``False`` and take no part in either distribution.

    Formula, per row over its valid candidates::

        c_j = cos(e_q, e_j)     P = softmax(c / tau)     Q = softmax(s / tau)
        L_row = 0.5 * (KL(Q || P) + KL(P || Q))          L = mean over the n rows

    A row with no valid candidate contributes 0 (and still counts in the mean); so does a
    row with one, where both distributions are the same point mass.

    Relation to InfoNCE: if ``Q`` is exactly one-hot on the positive, ``KL(Q||P) =
    -log P_pos``, the InfoNCE over the same candidates at the same ``tau``. One-hot ``Q`` is
    the limit ``(s_pos - max s_neg) / tau -> inf``; with ``tau = 0.02`` a score gap of 1
    leaves ``Q`` off one-hot by ``(c-1) e^{-50}``, below float precision. ``KL(P||Q)`` has no
    such limit: it grows like ``(1 - P_pos) * gap / tau`` and keeps pulling the similarities
    towards the judge's ranking, so the whole loss never reduces to InfoNCE.
    :meth:`per_row_terms` exposes both halves.

    References:
        Gu et al., "UniME-V2: MLLM-as-a-Judge for Universal Multimodal Embedding Learning".

    Example:
        >>> loss_fn = SoftLabelLoss(temperature=0.02)
        >>> q, cand = torch.randn(2, 16), torch.randn(2, 9, 16)
        >>> loss = loss_fn(q, cand, torch.rand(2, 9))
    """

    # The judge's scores of the positive and the mined negatives are the targets.
    encodes_negatives: ClassVar[bool] = True
    needs_scores: ClassVar[bool] = True
    min_negatives: ClassVar[int] = 1

    def __init__(self, temperature: float = 0.02) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature = float(temperature)

    def per_row_terms(
        self,
        query: Tensor,
        candidates: Tensor,
        judge_scores: Tensor,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(KL(Q||P), KL(P||Q))``, each of shape ``(n,)``; arguments as in the class."""
        check_rank("query", query, 2, "(n, d)")
        check_rank("candidates", candidates, 3, "(n, c, d)")
        check_dim("candidates", candidates, 0, query.shape[0], "the number of query rows")
        check_dim("candidates", candidates, 2, query.shape[1], "the embedding size of query")
        check_rank("judge_scores", judge_scores, 2, "(n, c)")
        check_dim("judge_scores", judge_scores, 0, query.shape[0], "the number of query rows")
        check_dim("judge_scores", judge_scores, 1, candidates.shape[1], "the candidates per row")
        n, c = candidates.shape[:2]
        valid = check_mask("mask", mask, (n, c))
        if valid is None:
            valid = torch.ones(n, c, dtype=torch.bool, device=candidates.device)
        scores = judge_scores.detach().to(device=candidates.device, dtype=torch.float32)
        if not torch.isfinite(scores[valid]).all():
            raise ValueError("judge_scores: unmasked entries must be finite")
        cos = F.cosine_similarity(query.float().unsqueeze(1), candidates.float(), dim=-1)
        log_p = masked_log_softmax(cos / self.temperature, valid)
        log_q = masked_log_softmax(scores / self.temperature, valid)
        return masked_kl(log_q, log_p, valid), masked_kl(log_p, log_q, valid)

    def forward(
        self,
        query: Tensor,
        candidates: Tensor,
        judge_scores: Tensor,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Return the scalar loss; shapes as in the class docstring."""
        kl_qp, kl_pq = self.per_row_terms(query, candidates, judge_scores, mask)
        if kl_qp.numel() == 0:
            return query.sum() * 0.0
        return (0.5 * (kl_qp + kl_pq)).mean()

    def on_batch(self, batch: PairBatch) -> Tensor:
        """The loss of a gathered stage-2 batch: the positive and the real negatives of each
        query are its candidates, the judge scores their targets."""
        candidates = torch.cat([batch.positive.unsqueeze(1), batch.negatives], dim=1)
        valid = torch.cat([torch.ones_like(batch.mask[:, :1]), batch.mask], dim=1)
        return self(batch.query, candidates, batch.scores, valid)

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for logging and for rebuilding the loss."""
        return {"temperature": self.temperature}
