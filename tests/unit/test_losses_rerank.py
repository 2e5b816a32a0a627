"""RerankLMLoss: shifted next-token cross-entropy on answer tokens only."""

from __future__ import annotations

import math

import pytest
import torch

from uniembed.losses import RerankGroupLoss, RerankLMLoss


def _nll(logits: list[float], target: int) -> float:
    m = max(logits)
    return -(logits[target] - m - math.log(sum(math.exp(v - m) for v in logits)))


LOGITS = [
    [[0.0, 1.0, 2.0], [1.0, 0.0, -1.0], [5.0, 5.0, 5.0]],
    [[0.5, 0.0, 0.0], [0.0, 0.0, 3.0], [2.0, 1.0, 0.0]],
]


def test_hand_computed_with_shift_and_token_mean() -> None:
    # Sequence 0: positions 1 and 2 are answer tokens (2, 0), predicted by logits 0 and 1.
    # Sequence 1: only position 2 (token 1), predicted by logit 1. Mean over 3 tokens.
    labels = torch.tensor([[-100, 2, 0], [-100, -100, 1]])
    expected = (_nll(LOGITS[0][0], 2) + _nll(LOGITS[0][1], 0) + _nll(LOGITS[1][1], 1)) / 3
    assert RerankLMLoss()(torch.tensor(LOGITS), labels).item() == pytest.approx(expected, rel=1e-6)


def test_prompt_positions_get_no_gradient() -> None:
    logits = torch.tensor(LOGITS, requires_grad=True)
    labels = torch.tensor([[-100, -100, 0], [-100, -100, 1]])
    RerankLMLoss()(logits, labels).backward()
    # Only logit 1 of each sequence predicts an answer token.
    assert torch.equal(logits.grad[:, 0], torch.zeros(2, 3))
    assert torch.equal(logits.grad[:, 2], torch.zeros(2, 3))
    assert logits.grad[:, 1].abs().sum() > 0


def test_no_answer_token_gives_zero_not_nan() -> None:
    logits = torch.randn(2, 4, 5, requires_grad=True)
    loss = RerankLMLoss()(logits, torch.full((2, 4), -100))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()


def test_bad_arguments() -> None:
    loss_fn = RerankLMLoss()
    with pytest.raises(ValueError, match="labels"):
        loss_fn(torch.randn(2, 4, 5), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        loss_fn(torch.randn(2, 4, 5), torch.full((2, 4), 5))
    with pytest.raises(TypeError, match="labels"):
        loss_fn(torch.randn(2, 4, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="logits"):
        loss_fn(torch.randn(2, 4), torch.zeros(2, 4, dtype=torch.long))


def test_group_loss_hand_computed() -> None:
    # Group 0: positive margin 2 against 0.5 and -1; group 1: only negatives (skipped);
    # group 2: two positives (1, 0) against one negative 3; -1 takes no part.
    margins = torch.tensor([2.0, 0.5, -1.0, 4.0, 1.0, 0.0, 3.0, 9.0])
    positive = torch.tensor([True, False, False, False, True, True, False, True])
    groups = torch.tensor([0, 0, 0, 1, 2, 2, 2, -1])
    g0 = -(2.0 - math.log(math.exp(2.0) + math.exp(0.5) + math.exp(-1.0)))
    g2 = -(math.log(math.exp(1.0) + 1.0) - math.log(math.exp(1.0) + 1.0 + math.exp(3.0)))
    loss = RerankGroupLoss()(margins, positive, groups)
    assert loss.item() == pytest.approx((g0 + g2) / 2, rel=1e-6)
    assert RerankGroupLoss.ranked_groups(positive, groups) == [0, 2]
    # Temperature divides the margins.
    half = RerankGroupLoss(temperature=2.0)(margins[:3], positive[:3], groups[:3])
    ref = -(1.0 - math.log(math.exp(1.0) + math.exp(0.25) + math.exp(-0.5)))
    assert half.item() == pytest.approx(ref, rel=1e-6)


def test_group_loss_without_a_ranked_group_is_zero_with_a_gradient() -> None:
    margins = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = RerankGroupLoss()(margins, torch.tensor([False, False]), torch.tensor([0, 0]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(margins.grad, torch.zeros(2))


def test_group_loss_bad_arguments() -> None:
    with pytest.raises(ValueError, match="temperature"):
        RerankGroupLoss(0.0)
    with pytest.raises(TypeError, match="positive"):
        RerankGroupLoss()(torch.zeros(2), torch.tensor([1, 0]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="groups"):
        RerankGroupLoss()(torch.zeros(2), torch.tensor([True, False]), torch.tensor([0]))
