"""DistillLoss against values worked out with plain Python math."""

from __future__ import annotations

import math

import pytest
import torch

from uniembed.losses import DistillLoss


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def test_two_rows_hand_computed() -> None:
    # Student rows normalise to (1,0), (0,1): cosine Gram [[1,0],[0,1]].
    student = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    # Teacher rows (another width) normalise to (1,0,0), (0.6,0.8,0): Gram [[1,.6],[.6,1]].
    teacher = torch.tensor([[2.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    tau = 0.5
    expected = _kl(_softmax([1 / tau, 0.6 / tau]), _softmax([1 / tau, 0.0])) + _kl(
        _softmax([0.6 / tau, 1 / tau]), _softmax([0.0, 1 / tau])
    )
    loss = DistillLoss(temperature=tau)(student, teacher)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    mean = DistillLoss(temperature=tau, average=True)(student, teacher)
    assert mean.item() == pytest.approx(expected / 2, rel=1e-5)


def test_exclude_self_hand_computed() -> None:
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    t = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    tau = 0.25
    gs = [[1, 0, 0.6], [0, 1, 0.8], [0.6, 0.8, 1]]
    gt = [[1, 0.8, 0], [0.8, 1, 0.6], [0, 0.6, 1]]
    expected = 0.0
    for i in range(3):
        others = [j for j in range(3) if j != i]
        p = _softmax([gt[i][j] / tau for j in others])
        q = _softmax([gs[i][j] / tau for j in others])
        expected += _kl(p, q)
    loss = DistillLoss(temperature=tau, exclude_self=True)(s, t)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_equal_gram_gives_zero_and_teacher_gets_no_gradient() -> None:
    student = torch.randn(5, 6, requires_grad=True)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6))
    teacher = (student.detach() @ rotation * 7.0).requires_grad_(True)  # same cosines
    loss = DistillLoss(temperature=0.1)(student, teacher)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert teacher.grad is None
    assert torch.isfinite(student.grad).all()


def test_single_row_with_exclude_self_is_zero_without_nan() -> None:
    student = torch.randn(1, 4, requires_grad=True)
    loss = DistillLoss(exclude_self=True)(student, torch.randn(1, 3))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(student.grad).all()


def test_bad_arguments() -> None:
    loss_fn = DistillLoss()
    with pytest.raises(ValueError, match="teacher"):
        loss_fn(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="student"):
        loss_fn(torch.randn(4), torch.randn(4, 4))
    with pytest.raises(ValueError, match="temperature"):
        DistillLoss(temperature=0.0)


def test_config_dict() -> None:
    cfg = DistillLoss(temperature=0.05, average=True).get_config_dict()
    assert cfg == {"temperature": 0.05, "average": True, "exclude_self": False}
    assert DistillLoss(**cfg).get_config_dict() == cfg
