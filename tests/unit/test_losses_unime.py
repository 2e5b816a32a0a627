"""UniMEHardNegativeLoss: hand-computed values, the false-negative filter, edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from uniembed.losses import UniMEHardNegativeLoss


def _ce_first(xs: list[float], tau: float) -> float:
    """-log softmax(xs / tau)[0]."""
    z = [x / tau for x in xs]
    m = max(z)
    return -(z[0] - m - math.log(sum(math.exp(v - m) for v in z)))


def _from_similarity(sim: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Query = identity rows and target = S^T, so that query @ target.T == S exactly."""
    s = torch.tensor(sim)
    n = s.shape[0]
    return torch.eye(n), s.T.contiguous().clone()


# Values are multiples of 1/8 so every sum and comparison is exact in float32.
SIM = [
    [0.500, 0.875, 0.250, 0.125],  # pos 0; col 1 > 0.5 + 0.25 is a false negative
    [0.375, 0.500, 0.750, 0.875],  # pos 1; col 2 == 0.75 sits on the margin (kept), col 3 out
    [0.125, 0.250, 0.000, 0.625],  # pos 3; cols 0, 1, 2 all eligible
]
LABELS = torch.tensor([0, 1, 3])


def test_three_rows_hand_computed() -> None:
    tau, k = 0.5, 2
    query, target = _from_similarity(SIM)
    loss_fn = UniMEHardNegativeLoss(temperature=tau, margin=0.25, num_negatives=k, normalize=False)
    expected = (
        _ce_first([0.5, 0.25, 0.125], tau)  # col 1 filtered; top-2 of {0.25, 0.125}
        + _ce_first([0.5, 0.75, 0.375], tau)  # col 3 filtered; col 2 on the margin is kept
        + _ce_first([0.625, 0.25, 0.125], tau)  # top-2 of {0.125, 0.25, 0.0}
    ) / 3
    assert loss_fn(query, target, LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_fewer_eligible_than_k_uses_only_the_eligible_ones() -> None:
    # k = 8 but rows have 2, 1 and 3 eligible negatives: no filler, no NaN.
    tau = 0.5
    query, target = _from_similarity(SIM)
    target.requires_grad_(True)
    loss_fn = UniMEHardNegativeLoss(temperature=tau, margin=0.25, num_negatives=8, normalize=False)
    loss = loss_fn(query, target, LABELS)
    expected = (
        _ce_first([0.5, 0.25, 0.125], tau)
        + _ce_first([0.5, 0.75, 0.375], tau)
        + _ce_first([0.625, 0.125, 0.25, 0.0], tau)
    ) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(target.grad).all()


def test_filtered_false_negative_gets_no_gradient() -> None:
    # One query; target 1 is a false negative (0.875 > 0.5 + 0.1). The released code fills
    # its top-k with such columns when a row runs short; here it must stay out entirely.
    query, target = _from_similarity([[0.5, 0.875, 0.25]])
    target.requires_grad_(True)
    loss_fn = UniMEHardNegativeLoss(temperature=0.5, margin=0.1, num_negatives=8, normalize=False)
    loss = loss_fn(query, target, torch.tensor([0]))
    assert loss.item() == pytest.approx(_ce_first([0.5, 0.25], 0.5), rel=1e-6)
    loss.backward()
    assert torch.equal(target.grad[1], torch.zeros(1))
    assert target.grad[2].abs().sum() > 0


def test_row_without_eligible_negatives_gives_zero() -> None:
    query, target = _from_similarity([[0.5, 0.875], [0.25, 0.5]])
    query.requires_grad_(True)
    target.requires_grad_(True)
    loss_fn = UniMEHardNegativeLoss(temperature=0.25, margin=0.1, normalize=False)
    # Row 0: the only other column is a false negative -> 0. Row 1: pos 1 (0.5) vs 0.25.
    loss = loss_fn(query, target, torch.tensor([0, 1]))
    expected = (0.0 + _ce_first([0.5, 0.25], 0.25)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(target.grad).all()

    single = UniMEHardNegativeLoss()(torch.randn(1, 4), torch.randn(1, 4), torch.tensor([0]))
    assert single.item() == 0.0


def test_normalises_inputs_by_default() -> None:
    q, t = torch.randn(6, 8), torch.randn(6, 8)
    labels = torch.arange(6)
    loss_fn = UniMEHardNegativeLoss()
    scaled = loss_fn(q * 3.0, t * 0.5, labels)
    assert scaled.item() == pytest.approx(loss_fn(q, t, labels).item(), rel=1e-5)


def test_bad_arguments() -> None:
    loss_fn = UniMEHardNegativeLoss()
    q, t = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="labels"):
        loss_fn(q, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        loss_fn(q, t, torch.tensor([0, 1, 5]))
    with pytest.raises(TypeError, match="labels"):
        loss_fn(q, t, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="target"):
        loss_fn(q, torch.randn(5, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="num_negatives"):
        UniMEHardNegativeLoss(num_negatives=0)


def test_config_dict_holds_the_paper_defaults() -> None:
    cfg = UniMEHardNegativeLoss().get_config_dict()
    assert cfg == {"temperature": 0.02, "margin": 0.1, "num_negatives": 8, "normalize": True}
    assert UniMEHardNegativeLoss(**cfg).get_config_dict() == cfg
