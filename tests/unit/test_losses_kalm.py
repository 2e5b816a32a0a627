"""KaLM-Embedding-V2's parts (focal reweighting, hard-negative mixing) and the loss they
make, against values worked out with plain Python math."""

from __future__ import annotations

import math

import pytest
import torch

from uniembed.losses import KaLMLoss
from uniembed.losses.focal import focal_terms
from uniembed.losses.negative_mixing import mix_hard_negatives


def _norm(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_focal_terms_hand_computed() -> None:
    log_p = torch.log(torch.tensor([0.8, 0.1]))
    out = focal_terms(log_p, 2.0)
    assert out.tolist() == pytest.approx(
        [-(0.2**2) * math.log(0.8), -(0.9**2) * math.log(0.1)], rel=1e-6
    )
    assert focal_terms(log_p, 0.0).tolist() == pytest.approx([-math.log(0.8), -math.log(0.1)])
    with pytest.raises(ValueError, match="gamma"):
        focal_terms(log_p, -1.0)


def test_mixing_interpolates_the_hardest_negative_with_the_next_ones() -> None:
    # Candidates: positive, then three negatives with similarities 0.2, 0.9, 0.5.
    vecs = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.6, 0.8]]
    sim = torch.tensor([[1.0, 0.2, 0.9, 0.5]])
    keep = torch.ones(1, 4, dtype=torch.bool)
    mixed, valid = mix_hard_negatives(sim, torch.tensor([vecs]), keep, 2, lam=0.75)
    hardest = vecs[2]
    want = [
        _norm([0.75 * a + 0.25 * b for a, b in zip(hardest, vecs[3])]),  # next: 0.5
        _norm([0.75 * a + 0.25 * b for a, b in zip(hardest, vecs[1])]),  # then 0.2
    ]
    assert mixed[0].flatten().tolist() == pytest.approx(sum(want, []), abs=1e-6)
    assert valid.tolist() == [[True, True]]
    # A masked negative is never mixed; a row short of negatives gets masked slots.
    keep[0, 3] = False
    mixed, valid = mix_hard_negatives(sim, torch.tensor([vecs]), keep, 3, lam=0.75)
    assert valid.tolist() == [[True, False, False]]
    assert mixed[0, 0].tolist() == pytest.approx(want[1], abs=1e-6)


def test_kalm_loss_hand_computed() -> None:
    q = [[1.0, 0.0], [0.0, 1.0]]
    p = [[0.8, 0.6], [0.6, 0.8]]
    h = [[[0.0, 1.0], [-0.6, 0.8]], [[1.0, 0.0], [0.8, -0.6]]]
    tau, gamma, lam = 0.5, 2.0, 0.5
    expected = 0.0
    for i, other in ((0, 1), (1, 0)):
        cands = [p[i], p[other], *h[i]]
        sims = [_dot(q[i], c) for c in cands]
        negs = sorted(range(1, len(cands)), key=lambda c: -sims[c])
        hardest = cands[negs[0]]
        mixed = _norm([lam * a + (1 - lam) * b for a, b in zip(hardest, cands[negs[1]])])
        logits = [s / tau for s in sims] + [_dot(q[i], mixed) / tau]
        m = max(logits)
        log_p = logits[0] - m - math.log(sum(math.exp(v - m) for v in logits))
        expected += -((1 - math.exp(log_p)) ** gamma) * log_p
    loss_fn = KaLMLoss(tau, focal_gamma=gamma, mix_negatives=1, mix_lambda=lam)
    loss = loss_fn(torch.tensor(q), torch.tensor(p), torch.tensor(h))
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)


def test_kalm_without_its_parts_is_infonce() -> None:
    from uniembed.losses import InfoNCELoss

    g = torch.Generator().manual_seed(1)
    args = (torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g))
    plain = KaLMLoss(0.05, focal_gamma=0.0, mix_negatives=0)
    assert plain(*args).item() == pytest.approx(InfoNCELoss(0.05)(*args).item(), rel=1e-6)
