"""InfoNCE with in-batch negatives and optional mined hard negatives."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniembed.losses._checks import check_dim, check_mask, check_positive, check_rank
from uniembed.losses.batch import PairBatch, with_mined_negatives


class InfoNCELoss(nn.Module):
    r"""Cross-entropy of each query's positive against in-batch and mined negatives.

    Inputs:
        query: ``(n, d)`` query embeddings.
        positive: ``(n, d)`` the positive of each query.
        negatives: optional ``(n, k, d)`` mined negatives of each query (its own only).
        negatives_mask: optional ``(n, k)`` bool, ``True`` for real negatives (padding
            ``False``); only valid together with ``negatives``.

    With cosine similarities (or dot products when ``normalize=False``), row ``i`` scores::

        logits_i = [q_i . p_0, ..., q_i . p_{n-1}, q_i . h_{i,1}, ..., q_i . h_{i,k}] / tau
        loss_i   = -log softmax(logits_i)[i]

    so the positives of the other rows are negatives. With ``in_batch_negatives=False`` the
    row is ``[q_i . p_i, q_i . h_{i,1..k}] / tau`` (label 0): the InfoNCE over the same
    candidates as :class:`SoftLabelLoss`. The loss is the mean over rows; masked negatives
    carry no weight, and a row left with only its positive has loss 0.

    References:
        van den Oord et al., "Representation Learning with Contrastive Predictive Coding";
        Jiang et al., "VLM2Vec: Training Vision-Language Models for Massive Multimodal
        Embedding Tasks".

    Example:
        >>> loss_fn = InfoNCELoss(temperature=0.02)
        >>> loss = loss_fn(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 3, 8))
    """

    # Mined negatives are optional (in-batch negatives always count); no scores needed.
    encodes_negatives: ClassVar[bool] = True
    needs_scores: ClassVar[bool] = False
    min_negatives: ClassVar[int] = 0

    def __init__(
        self, temperature: float = 0.02, in_batch_negatives: bool = True, normalize: bool = True
    ) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature = float(temperature)
        self.in_batch_negatives = bool(in_batch_negatives)
        self.normalize = bool(normalize)

    def forward(
        self,
        query: Tensor,
        positive: Tensor,
        negatives: Tensor | None = None,
        negatives_mask: Tensor | None = None,
    ) -> Tensor:
        """Return the scalar mean loss; shapes as in the class docstring."""
        check_rank("query", query, 2, "(n, d)")
        check_rank("positive", positive, 2, "(n, d)")
        n, d = query.shape
        check_dim("positive", positive, 0, n, "the number of query rows")
        check_dim("positive", positive, 1, d, "the embedding size of query")
        if negatives is not None:
            check_rank("negatives", negatives, 3, "(n, k, d)")
            check_dim("negatives", negatives, 0, n, "the number of query rows")
            check_dim("negatives", negatives, 2, d, "the embedding size of query")
            check_mask("negatives_mask", negatives_mask, tuple(negatives.shape[:2]))
        elif negatives_mask is not None:
            raise ValueError("negatives_mask: given without negatives")
        if n == 0:
            return query.sum() * 0.0
        # float32: at tau = 0.02 a bf16 similarity would be off by several logits.
        query, positive = query.float(), positive.float()
        negatives = negatives.float() if negatives is not None else None
        if self.normalize:
            query = F.normalize(query, dim=-1)
            positive = F.normalize(positive, dim=-1)
            negatives = F.normalize(negatives, dim=-1) if negatives is not None else None
        rows = torch.arange(n, device=query.device)
        if self.in_batch_negatives:
            parts = [query @ positive.T]  # (n, n), the positive of row i at column i
            target = rows
        else:
            parts = [(query * positive).sum(-1, keepdim=True)]  # (n, 1)
            target = torch.zeros_like(rows)
        if negatives is not None:
            hard = torch.einsum("nd,nkd->nk", query, negatives)
            if negatives_mask is not None:
                hard = hard.masked_fill(~negatives_mask, float("-inf"))
            parts.append(hard)
        logits = torch.cat(parts, dim=1) / self.temperature
        # The positive's logit is always finite, so no row is all -inf.
        return F.cross_entropy(logits, target)

    def on_batch(self, batch: PairBatch) -> Tensor:
        """The loss of a gathered stage-2 batch, with its mined negatives when it has any."""
        return with_mined_negatives(self, batch)

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for logging and for rebuilding the loss."""
        return {
            "temperature": self.temperature,
            "in_batch_negatives": self.in_batch_negatives,
            "normalize": self.normalize,
        }
