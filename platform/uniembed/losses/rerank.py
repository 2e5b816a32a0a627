"""Reranker training: next-token cross-entropy on the answer tokens only."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniembed.losses._checks import check_dim, check_rank

IGNORE_INDEX = -100  # the label of prompt and padding tokens (the transformers convention)


class RerankLMLoss(nn.Module):
    r"""Causal-LM cross-entropy restricted to answer tokens ("Yes", "No", "Ans: (k)").

    Inputs:
        logits: ``(b, t, v)`` language-model logits; position ``j`` predicts token ``j + 1``.
        labels: ``(b, t)`` integer token ids of the same sequence, ``-100`` on prompt and
            padding tokens (those take no part in the loss).

    Formula, with the shift that aligns each logit with the token it predicts::

        L = sum_{b, j : labels[b, j+1] != -100} -log softmax(logits[b, j])[labels[b, j+1]]
            / #{answer tokens}

    a mean over answer tokens of the whole batch (not over sequences), so a long answer
    weighs as many tokens as it has. A batch with no answer token gives 0, not NaN.

    References:
        Gu et al., "UniME-V2: MLLM-as-a-Judge for Universal Multimodal Embedding Learning"
        (the UniME-V2 reranker).

    Example:
        >>> logits = torch.randn(2, 5, 11)
        >>> labels = torch.tensor([[-100, -100, -100, 3, 4], [-100, -100, -100, -100, 7]])
        >>> loss = RerankLMLoss()(logits, labels)
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Return the scalar mean cross-entropy over answer tokens."""
        check_rank("logits", logits, 3, "(b, t, v)")
        check_rank("labels", labels, 2, "(b, t)")
        check_dim("labels", labels, 0, logits.shape[0], "the batch size of logits")
        check_dim("labels", labels, 1, logits.shape[1], "the sequence length of logits")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"labels: expected an integer tensor, got {labels.dtype}")
        v = logits.shape[2]
        answer = labels != IGNORE_INDEX
        if answer.any():
            bad = labels[answer]
            if int(bad.min()) < 0 or int(bad.max()) >= v:
                raise ValueError(
                    f"labels: token ids must lie in [0, {v}) or be {IGNORE_INDEX}, "
                    f"got min {int(bad.min())} max {int(bad.max())}"
                )
        shift_logits = logits[:, :-1, :].float()
        shift_labels = labels[:, 1:].to(logits.device).long()
        token_loss = F.cross_entropy(
            shift_logits.reshape(-1, v),
            shift_labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        count = (shift_labels != IGNORE_INDEX).sum()
        # clamp: a batch without answer tokens gives 0 / 1 = 0 rather than 0 / 0 = NaN.
        return token_loss / count.clamp(min=1)

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters (none), for logging symmetry with the other losses."""
        return {"ignore_index": IGNORE_INDEX}


class RerankGroupLoss(nn.Module):
    r"""Each query's positive against its pairwise negatives, on the judge's Yes-No margins.

    The judge scores a pair by ``P(Yes) = sigmoid(l_yes - l_no)`` at the answer position, so
    the margin ``m = l_yes - l_no`` orders a query's candidates. Answer-token cross-entropy
    trains each pair on its own; this loss trains the order within a query (localized
    contrastive estimation), which is what the mine job's AUC and a rerank read.

    Inputs:
        margins: ``(n,)`` float, ``l_yes - l_no`` of each pairwise chat.
        positive: ``(n,)`` bool, the chat's answer is Yes.
        groups: ``(n,)`` integer query index of each chat; ``-1`` takes no part.

    Formula, over the groups ``G`` holding at least one positive and one negative::

        L = 1/|G| sum_{g in G} -log( sum_{i in g, pos} e^{m_i / tau} / sum_{i in g} e^{m_i / tau} )

    A call with no such group gives 0, not NaN.

    References:
        Gao et al., "Rethink Training of BERT Rerankers in Multi-Stage Retrieval Pipeline"
        (localized contrastive estimation).

    Example:
        >>> m, pos = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([True, False, False])
        >>> loss = RerankGroupLoss()(m, pos, torch.zeros(3, dtype=torch.long))
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    @staticmethod
    def ranked_groups(positive: Tensor, groups: Tensor) -> list[int]:
        """The group ids that take part: at least one positive and one negative."""
        out = []
        for g in sorted({int(x) for x in groups.tolist()} - {-1}):
            member = groups == g
            if bool(positive[member].any()) and not bool(positive[member].all()):
                out.append(g)
        return out

    def forward(self, margins: Tensor, positive: Tensor, groups: Tensor) -> Tensor:
        """Return the scalar mean over ranked groups (0 when there is none)."""
        check_rank("margins", margins, 1, "(n,)")
        check_rank("positive", positive, 1, "(n,)")
        check_rank("groups", groups, 1, "(n,)")
        check_dim("positive", positive, 0, margins.shape[0], "the length of margins")
        check_dim("groups", groups, 0, margins.shape[0], "the length of margins")
        if positive.dtype != torch.bool:
            raise TypeError(f"positive: expected a bool tensor, got {positive.dtype}")
        scaled = margins.float() / self.temperature
        terms = []
        for g in self.ranked_groups(positive, groups):
            member = groups == g
            m, pos = scaled[member], positive[member]
            terms.append(torch.logsumexp(m, 0) - torch.logsumexp(m[pos], 0))
        if not terms:
            return margins.sum() * 0.0
        return torch.stack(terms).mean()

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for logging."""
        return {"temperature": self.temperature}
