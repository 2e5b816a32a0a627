"""SoftLabelLoss: hand-computed values, masking, and its InfoNCE limit."""

from __future__ import annotations

import math

import pytest
import torch

from uniembed.losses import InfoNCELoss, SoftLabelLoss


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def _sym(cos: list[float], scores: list[float], tau: float) -> float:
    p = _softmax([c / tau for c in cos])
    q = _softmax([s / tau for s in scores])
    return 0.5 * (_kl(q, p) + _kl(p, q))


def test_two_rows_hand_computed_with_padding() -> None:
    tau = 0.5
    query = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    candidates = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],  # cosines 1, 0, 0.6
            [[0.6, 0.8], [0.0, -3.0], [0.0, 0.0]],  # cosines 0.8, -1, padding
        ]
    )
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.7, 0.2, float("nan")]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    row0 = _sym([1.0, 0.0, 0.6], [0.9, 0.1, 0.5], tau)
    row1 = _sym([0.8, -1.0], [0.7, 0.2], tau)  # the padded candidate takes no part
    expected = (row0 + row1) / 2
    query.requires_grad_(True)
    loss = SoftLabelLoss(temperature=tau)(query, candidates, scores, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(query.grad).all()


def test_fully_masked_rows_give_zero_without_nan() -> None:
    query = torch.randn(3, 4, requires_grad=True)
    candidates = torch.randn(3, 5, 4, requires_grad=True)
    scores = torch.rand(3, 5)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False  # nothing left in row 1
    mask[2, 1:] = False  # only the positive in row 2: P = Q = point mass
    loss_fn = SoftLabelLoss()
    kl_qp, kl_pq = loss_fn.per_row_terms(query, candidates, scores, mask)
    assert kl_qp[1:].tolist() == [0.0, 0.0] and kl_pq[1:].tolist() == [0.0, 0.0]
    loss = loss_fn(query, candidates, scores, mask)
    assert loss.item() == pytest.approx((0.5 * (kl_qp[0] + kl_pq[0]) / 3).item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(candidates.grad).all()
    assert torch.equal(candidates.grad[1], torch.zeros(5, 4))

    nothing = loss_fn(query, candidates, scores, torch.zeros(3, 5, dtype=torch.bool))
    assert nothing.item() == 0.0


def test_forward_kl_equals_infonce_when_judge_scores_are_one_hot() -> None:
    # With Q exactly one-hot on the positive, KL(Q||P) = -log P_pos: InfoNCE over the same
    # candidates at the same tau. Scores (1, 0, ..., 0) at tau = 0.02 put (c-1) e^-50 of mass
    # off the positive, far below float32 resolution, so the two agree to rounding, in value
    # and in gradient.
    tau = 0.02
    query = torch.randn(4, 16, requires_grad=True)
    candidates = torch.randn(4, 9, 16, requires_grad=True)
    scores = torch.zeros(4, 9)
    scores[:, 0] = 1.0
    kl_qp, kl_pq = SoftLabelLoss(temperature=tau).per_row_terms(query, candidates, scores)
    infonce = InfoNCELoss(temperature=tau, in_batch_negatives=False)(
        query, candidates[:, 0], candidates[:, 1:]
    )
    assert kl_qp.mean().item() == pytest.approx(infonce.item(), rel=1e-5, abs=1e-5)
    g_soft = torch.autograd.grad(kl_qp.mean(), [query, candidates])
    g_nce = torch.autograd.grad(infonce, [query, candidates])
    for a, b in zip(g_soft, g_nce):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # The reverse half has no such limit: it stays positive whenever P is not one-hot.
    assert (kl_pq > 0).all()


def test_infonce_limit_needs_a_score_gap_of_many_temperatures() -> None:
    # Hand-computed: tau = 0.1, cosines (0.5, 0.6, 0.2, 0.0) with the positive first, judge
    # scores (0.5 + gap, 0.5, 0.5, 0.5). InfoNCE = -log P_pos = 1.32835. KL(Q||P) is not
    # monotone in the gap (1.475, 1.084, 1.327 at gaps 0.05, 0.2, 1.0) and only reaches the
    # InfoNCE value once gap / tau is large: within 1.2e-7 at gap / tau = 20.
    tau = 0.1
    cosines = [0.5, 0.6, 0.2, 0.0]
    query = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[[c, math.sqrt(1.0 - c * c)] for c in cosines]])
    p = _softmax([c / tau for c in cosines])
    infonce = -math.log(p[0])
    loss_fn = SoftLabelLoss(temperature=tau)
    for gap in (0.05, 0.2, 1.0, 2.0):
        scores = [0.5 + gap, 0.5, 0.5, 0.5]
        expected = _kl(_softmax([s / tau for s in scores]), p)
        kl_qp, _ = loss_fn.per_row_terms(query, candidates, torch.tensor([scores]))
        assert kl_qp.item() == pytest.approx(expected, rel=1e-5)
        if gap <= 0.2:
            assert abs(expected - infonce) > 0.1
    assert abs(expected - infonce) < 1e-6
    assert kl_qp.item() == pytest.approx(infonce, rel=1e-5)
    nce = InfoNCELoss(temperature=tau, in_batch_negatives=False)(
        query, candidates[:, 0], candidates[:, 1:]
    )
    assert nce.item() == pytest.approx(infonce, rel=1e-5)


def test_judge_scores_get_no_gradient() -> None:
    scores = torch.rand(2, 3, requires_grad=True)
    loss = SoftLabelLoss()(torch.randn(2, 4), torch.randn(2, 3, 4, requires_grad=True), scores)
    loss.backward()
    assert scores.grad is None


def test_bad_arguments() -> None:
    loss_fn = SoftLabelLoss()
    q, cand = torch.randn(2, 4), torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="judge_scores"):
        loss_fn(q, cand, torch.rand(2, 4))  # one score more than candidates
    with pytest.raises(ValueError, match="judge_scores"):
        loss_fn(q, cand, torch.rand(3, 3))
    with pytest.raises(ValueError, match="candidates"):
        loss_fn(q, torch.randn(2, 3, 5), torch.rand(2, 3))
    with pytest.raises(ValueError, match="candidates"):
        loss_fn(q, torch.randn(3, 4), torch.rand(3, 4))
    with pytest.raises(ValueError, match="mask"):
        loss_fn(q, cand, torch.rand(2, 3), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        loss_fn(q, cand, torch.rand(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="judge_scores"):
        loss_fn(q, cand, torch.tensor([[0.5, float("nan"), 0.1], [0.2, 0.3, 0.4]]))


def test_config_dict() -> None:
    assert SoftLabelLoss().get_config_dict() == {"temperature": 0.02}
