"""RzenEmbed's parts (hardness weighting, learnable temperature, false-negative mitigation)
and the loss they make, against values worked out with plain Python math."""

from __future__ import annotations

import math

import pytest
import torch

from uniembed.losses import LOSSES, PairBatch, RzenEmbedLoss
from uniembed.losses._candidates import candidates
from uniembed.losses.false_negatives import false_negative_mask
from uniembed.losses.hardness import hardness_bias
from uniembed.losses.temperature import Temperature


def _ce0(logits: list[float]) -> float:
    m = max(logits)
    return -(logits[0] - m - math.log(sum(math.exp(v - m) for v in logits)))


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


# Unit rows, so cosine = dot product.
Q = [[1.0, 0.0], [0.0, 1.0]]
P = [[0.8, 0.6], [0.6, 0.8]]
H = [[[0.6, 0.8]], [[1.0, 0.0]]]


def test_candidates_put_the_positive_first_then_the_others_then_the_mined() -> None:
    cand = candidates(torch.tensor(Q), torch.tensor(P), torch.tensor(H))
    expected = [
        [_dot(Q[0], P[0]), _dot(Q[0], P[1]), _dot(Q[0], H[0][0])],
        [_dot(Q[1], P[1]), _dot(Q[1], P[0]), _dot(Q[1], H[1][0])],
    ]
    assert cand.sim.flatten().tolist() == pytest.approx(sum(expected, []), abs=1e-6)
    assert cand.valid.all()


def test_hardness_bias_is_alpha_times_the_similarity_except_on_the_positive() -> None:
    sim = torch.tensor([[0.9, 0.5, -0.2]], requires_grad=True)
    bias = hardness_bias(sim, 2.0)
    assert bias[0].tolist() == pytest.approx([0.0, 1.0, -0.4])
    assert not bias.requires_grad  # a weight, not a path for the gradient


def test_rzen_loss_hand_computed_without_the_filter_and_fixed_temperature() -> None:
    tau, alpha = 0.5, 3.0
    expected = 0.0
    for i, other in ((0, 1), (1, 0)):
        s = [_dot(Q[i], P[i]), _dot(Q[i], P[other]), _dot(Q[i], H[i][0])]
        expected += _ce0([s[0] / tau] + [v / tau + alpha * v for v in s[1:]])
    loss_fn = RzenEmbedLoss(tau, hardness_alpha=alpha, learn_temperature=False, fn_filter=False)
    loss = loss_fn(torch.tensor(Q), torch.tensor(P), torch.tensor(H))
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)
    plain = RzenEmbedLoss(tau, hardness_alpha=0.0, learn_temperature=False, fn_filter=False)
    infonce = LOSSES["infonce"](temperature=tau)
    args = (torch.tensor(Q), torch.tensor(P), torch.tensor(H))
    assert plain(*args).item() == pytest.approx(infonce(*args).item(), rel=1e-6)


def test_false_negative_mask_drops_duplicates_of_the_positive_and_those_far_above_it() -> None:
    # Row 0: positive at 0.6; a candidate identical to the positive (0.6) and one at 0.9.
    q = [1.0, 0.0]
    pos, dup, above, fine = [0.6, 0.8], [0.6, 0.8], [0.9, math.sqrt(1 - 0.81)], [0.0, 1.0]
    vectors = torch.tensor([[pos, dup, above, fine]])
    sim = torch.einsum("d,ncd->nc", torch.tensor(q), vectors)
    flagged = false_negative_mask(sim, vectors, margin=0.1)
    assert flagged.tolist() == [[False, True, True, False]]
    assert false_negative_mask(sim, vectors, margin=None).tolist() == [[False, True, False, False]]
    assert false_negative_mask(sim, vectors, 0.1, dup_eps=-1).tolist() == [
        [False, False, True, False]
    ]


def test_rzen_loss_with_the_filter_leaves_false_negatives_out() -> None:
    # Both rows share one target: each row's in-batch candidate duplicates its positive.
    q, p = [[1.0, 0.0], [0.8, 0.6]], [[0.6, 0.8], [0.6, 0.8]]
    h = [[[0.0, 1.0]], [[1.0, 0.0]]]
    tau, alpha = 0.5, 1.0
    expected = 0.0
    for i in range(2):
        s_pos, s_neg = _dot(q[i], p[i]), _dot(q[i], h[i][0])
        if s_neg > s_pos + 0.1:  # row 1's mined negative lies above: dropped too
            expected += _ce0([s_pos / tau])
        else:
            expected += _ce0([s_pos / tau, s_neg / tau + alpha * s_neg])
    loss_fn = RzenEmbedLoss(tau, hardness_alpha=alpha, learn_temperature=False, margin=0.1)
    loss = loss_fn(torch.tensor(q), torch.tensor(p), torch.tensor(h))
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)


def test_learnable_temperature_gets_the_hand_computed_gradient() -> None:
    temp = Temperature(0.5, learnable=True)
    assert [n for n, _ in temp.named_parameters()] == ["log_tau"]
    assert temp.value() == pytest.approx(0.5)
    s = [0.8, 0.6]  # positive, one negative
    tau = temp()
    logits = torch.tensor(s) / tau
    loss = -torch.log_softmax(logits, dim=0)[0]
    loss.backward()
    # dL/dlog tau = tau * sum_c (p_c - [c = 0]) * (-s_c / tau^2)
    z = [v / 0.5 for v in s]
    e = [math.exp(v) for v in z]
    pc = [v / sum(e) for v in e]
    grad = 0.5 * sum((pc[c] - (c == 0)) * (-s[c] / 0.25) for c in range(2))
    assert temp.log_tau.grad.item() == pytest.approx(grad, rel=1e-5)
    fixed = Temperature(0.5, learnable=False)
    assert list(fixed.parameters()) == [] and fixed.value() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="temperature"):
        Temperature(2.0)


def test_rzen_trains_its_temperature_through_on_batch() -> None:
    loss_fn = RzenEmbedLoss(0.05)
    n, k, d = 3, 2, 4
    g = torch.Generator().manual_seed(0)
    batch = PairBatch(
        torch.randn(n, d, generator=g),
        torch.randn(n, d, generator=g),
        torch.randn(n, k, d, generator=g),
        torch.tensor([[True, False]] * n),
        torch.zeros(n, 1 + k),
    )
    loss_fn.on_batch(batch).backward()
    assert loss_fn.tau.log_tau.grad is not None and torch.isfinite(loss_fn.tau.log_tau.grad)
