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
