"""InfoNCELoss against values worked out with plain Python math."""

from __future__ import annotations

import math

import pytest
import torch

from uniembed.losses import InfoNCELoss


def _ce(logits: list[float], target: int) -> float:
    m = max(logits)
    return -(logits[target] - m - math.log(sum(math.exp(v - m) for v in logits)))


Q = [[1.0, 0.0], [0.0, 1.0]]
P = [[0.5, 0.5], [0.25, 0.75]]
H = [[[0.25, 0.0], [-1.0, 0.5]], [[0.0, -0.5], [1.0, 1.0]]]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_in_batch_and_mined_negatives_hand_computed() -> None:
    tau = 0.5
    expected = 0.0
    for i in range(2):
        logits = [_dot(Q[i], P[j]) / tau for j in range(2)]
        logits += [_dot(Q[i], h) / tau for h in H[i]]
        expected += _ce(logits, i)
    loss_fn = InfoNCELoss(temperature=tau, normalize=False)
    loss = loss_fn(torch.tensor(Q), torch.tensor(P), torch.tensor(H))
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)


def test_without_in_batch_negatives_and_with_a_mask() -> None:
    tau = 0.5
    mask = torch.tensor([[True, False], [True, True]])
    expected = _ce([_dot(Q[0], P[0]) / tau, _dot(Q[0], H[0][0]) / tau], 0)
    expected += _ce([_dot(Q[1], P[1]) / tau] + [_dot(Q[1], h) / tau for h in H[1]], 0)
    loss_fn = InfoNCELoss(temperature=tau, in_batch_negatives=False, normalize=False)
    loss = loss_fn(torch.tensor(Q), torch.tensor(P), torch.tensor(H), mask)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)


def test_in_batch_only_hand_computed_and_normalised() -> None:
    tau = 0.1
    q = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalises to Q
    p = torch.tensor([[1.0, 1.0], [1.0, 3.0]])
    pn = [[v / math.hypot(*row) for v in row] for row in p.tolist()]
    expected = sum(_ce([_dot(Q[i], pn[j]) / tau for j in range(2)], i) for i in range(2)) / 2
    assert InfoNCELoss(temperature=tau)(q, p).item() == pytest.approx(expected, rel=1e-5)


def test_row_with_only_its_positive_left_gives_zero() -> None:
    q = torch.randn(2, 4, requires_grad=True)
    loss_fn = InfoNCELoss(in_batch_negatives=False)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    loss = loss_fn(q, torch.randn(2, 4), torch.randn(2, 3, 4), mask)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(q.grad).all()


def test_bad_arguments() -> None:
    loss_fn = InfoNCELoss()
    q = torch.randn(2, 4)
    with pytest.raises(ValueError, match="positive"):
        loss_fn(q, torch.randn(3, 4))
    with pytest.raises(ValueError, match="positive"):
        loss_fn(q, torch.randn(2, 5))
    with pytest.raises(ValueError, match="negatives"):
        loss_fn(q, torch.randn(2, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="negatives_mask"):
        loss_fn(q, torch.randn(2, 4), None, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="negatives_mask"):
        loss_fn(q, torch.randn(2, 4), torch.randn(2, 3, 4), torch.ones(2, 2, dtype=torch.bool))


def test_config_dict() -> None:
    cfg = InfoNCELoss(temperature=0.05).get_config_dict()
    assert cfg == {"temperature": 0.05, "in_batch_negatives": True, "normalize": True}
