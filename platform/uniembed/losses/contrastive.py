"""UniME stage 2: hard-negative enhanced contrastive loss over the gathered global batch."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniembed.losses._checks import check_dim, check_positive, check_rank
from uniembed.losses.batch import PairBatch


class UniMEHardNegativeLoss(nn.Module):
    r"""Cross-entropy of each query's positive against its k hardest non-false negatives.

    Inputs:
        query: ``(n, d)`` query embeddings (the global batch, see ``gather_with_grad``).
        target: ``(m, d)`` target embeddings; every other query's positive is a candidate
            negative of this query.
        labels: ``(n,)`` integer index in ``target`` of each query's positive.

    With ``X`` and ``Y`` the (optionally L2-normalised) rows and ``S = X Y^T``, for row ``i``
    with positive ``p = labels[i]``:

    1. false-negative filter: column ``j != p`` is dropped when ``S[i,j] > S[i,p] + margin``
       (a target that much closer than the positive is most likely a correct answer too);
    2. hard negatives: the ``k`` largest remaining ``S[i,j]``, ``j != p``;
    3. ``loss_i = -log softmax([S[i,p], S[i,n_1], ..., S[i,n_k]] / tau)[0]``.

    The loss is the mean of ``loss_i`` over all ``n`` rows. A row with fewer than ``k``
    eligible negatives uses the ones it has (the empty slots are ``-inf`` and carry no
    weight); a row with none has ``loss_i = 0`` exactly, and still counts in the mean.
    Filtered columns never enter the loss, not even as fillers, and get no gradient.

    References:
        Gu et al., "Breaking the Modality Barrier: Universal Embedding Learning with Multimodal
        LLMs" (UniME), stage 2: hard negative enhanced instruction tuning.

    Example:
        >>> loss_fn = UniMEHardNegativeLoss(temperature=0.02, margin=0.1, num_negatives=8)
        >>> q, t = torch.randn(16, 32), torch.randn(16, 32)
        >>> loss = loss_fn(q, t, torch.arange(16))
    """

    # The negatives are picked in-batch; the mined ones are not encoded and no scores needed.
    encodes_negatives: ClassVar[bool] = False
    needs_scores: ClassVar[bool] = False
    min_negatives: ClassVar[int] = 1

    def __init__(
        self,
        temperature: float = 0.02,
        margin: float = 0.1,
        num_negatives: int = 8,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        self.temperature = float(temperature)
        self.margin = float(margin)
        self.num_negatives = int(num_negatives)
        self.normalize = bool(normalize)

    def logits(self, query: Tensor, target: Tensor, labels: Tensor) -> Tensor:
        """The ``(n, 1 + k')`` logits (positive first, ``k' = min(k, m - 1)``, ``-inf`` pads)."""
        check_rank("query", query, 2, "(n, d)")
        check_rank("target", target, 2, "(m, d)")
        check_dim("target", target, 1, query.shape[1], "the embedding size of query")
        check_rank("labels", labels, 1, "(n,)")
        check_dim("labels", labels, 0, query.shape[0], "the number of query rows")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"labels: expected an integer tensor, got {labels.dtype}")
        m = target.shape[0]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= m):
            raise ValueError(f"labels: every index must lie in [0, {m}), got {labels.tolist()}")
        # float32: at tau = 0.02 a bf16 similarity would be off by several logits.
        query, target = query.float(), target.float()
        if self.normalize:
            query = F.normalize(query, dim=-1)
            target = F.normalize(target, dim=-1)
        sim = query @ target.T  # (n, m)
        rows = torch.arange(query.shape[0], device=sim.device)
        labels = labels.to(sim.device).long()
        pos = sim[rows, labels]  # (n,)
        # The selection is a discrete decision: make it on detached values.
        with torch.no_grad():
            eligible = sim <= (pos + self.margin).unsqueeze(1)
            eligible[rows, labels] = False
        k = min(self.num_negatives, m - 1)
        if k <= 0:
            return (pos / self.temperature).unsqueeze(1)
        masked = sim.masked_fill(~eligible, float("-inf"))
        neg, _ = masked.topk(k, dim=1)  # -inf where a row ran out of eligible negatives
        return torch.cat([pos.unsqueeze(1), neg], dim=1) / self.temperature

    def forward(self, query: Tensor, target: Tensor, labels: Tensor) -> Tensor:
        """Return the scalar mean loss; shapes as in the class docstring."""
        logits = self.logits(query, target, labels)
        if logits.shape[0] == 0:
            return logits.sum() * 0.0
        # logits[:, 0] is finite, so log_softmax never sees an all -inf row.
        return -torch.log_softmax(logits, dim=1)[:, 0].mean()

    def on_batch(self, batch: PairBatch) -> Tensor:
        """The loss of a gathered stage-2 batch: each query against all the positives."""
        q = batch.query
        return self(q, batch.positive, torch.arange(q.shape[0], device=q.device))

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for logging and for rebuilding the loss."""
        return {
            "temperature": self.temperature,
            "margin": self.margin,
            "num_negatives": self.num_negatives,
            "normalize": self.normalize,
        }
