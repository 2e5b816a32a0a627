"""UniME stage 1: textual discriminative knowledge distillation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniembed.losses._checks import check_dim, check_positive, check_rank
from uniembed.losses._kl import masked_kl, masked_log_softmax


class DistillLoss(nn.Module):
    r"""KL divergence between the teacher's and the student's in-batch similarity distributions.

    Inputs:
        student: ``(n, d)`` student embeddings (the MLLM's language model).
        teacher: ``(n, d')`` teacher embeddings of the same ``n`` texts, in the same order
            (computed offline; no gradient flows into them). ``d'`` may differ from ``d``.

    Both are L2-normalised inside. With ``E_s``, ``E_t`` the normalised rows::

        P_t = softmax(E_t E_t^T / tau, dim=1)        Q_s = softmax(E_s E_s^T / tau, dim=1)
        L   = sum_i KL(P_t[i] || Q_s[i]) = sum_i sum_j P_t[i,j] (log P_t[i,j] - log Q_s[i,j])

    ``average=True`` divides by ``n`` (the mean over rows) instead of the paper's sum.
    The diagonal (self-similarity, always ``1/tau`` after normalisation) is part of each row as
    in the paper; ``exclude_self=True`` drops it, which keeps the off-diagonal structure from
    being swamped by the ``e^{1/tau}`` self term at small temperatures.

    References:
        Gu et al., "Breaking the Modality Barrier: Universal Embedding Learning with Multimodal
        LLMs" (UniME), stage 1.

    Example:
        >>> loss_fn = DistillLoss(temperature=0.02)
        >>> loss = loss_fn(torch.randn(4, 8), torch.randn(4, 16))
        >>> loss.shape
        torch.Size([])
    """

    def __init__(
        self, temperature: float = 0.02, average: bool = False, exclude_self: bool = False
    ) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature = float(temperature)
        self.average = bool(average)
        self.exclude_self = bool(exclude_self)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Return the scalar loss for ``student (n, d)`` against ``teacher (n, d')``."""
        check_rank("student", student, 2, "(n, d)")
        check_rank("teacher", teacher, 2, "(n, d')")
        check_dim("teacher", teacher, 0, student.shape[0], "the number of student rows")
        n = student.shape[0]
        if n == 0:
            return student.sum() * 0.0
        s = F.normalize(student.float(), dim=-1)
        t = F.normalize(teacher.detach().float(), dim=-1)
        logits_s = s @ s.T / self.temperature
        logits_t = t @ t.T / self.temperature
        valid = torch.ones(n, n, dtype=torch.bool, device=student.device)
        if self.exclude_self:
            valid &= ~torch.eye(n, dtype=torch.bool, device=student.device)
        # With exclude_self a single text has no other text: its row is empty and gives 0.
        per_row = masked_kl(
            masked_log_softmax(logits_t, valid), masked_log_softmax(logits_s, valid), valid
        )
        return per_row.mean() if self.average else per_row.sum()

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for logging and for rebuilding the loss."""
        return {
            "temperature": self.temperature,
            "average": self.average,
            "exclude_self": self.exclude_self,
        }
