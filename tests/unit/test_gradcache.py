"""GradCache gives the loss and parameter gradients of the plain step, dropout included."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from uniembed.losses import DistillLoss, SoftLabelLoss, UniMEHardNegativeLoss
from uniembed.training import GradCache, split_batch
from uniembed.training import gradcache as gradcache_module

N, C, D_IN = 6, 3, 5


class Tower(nn.Module):
    """A small encoder whose dropout is active (train mode) throughout."""

    def __init__(self, p: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(D_IN, 16), nn.ReLU(), nn.Dropout(p), nn.Linear(16, 4))

    def encode(self, chunk: dict[str, Any]) -> Tensor:
        assert len(chunk["ids"]) == chunk["x"].shape[0]  # lists are sliced with the tensors
        assert chunk["kind"] == "text"  # non-sliceable values are shared by every chunk
        return self.net(chunk["x"])


def _batch(n: int) -> dict[str, Any]:
    return {"x": torch.randn(n, D_IN), "ids": [f"r{i}" for i in range(n)], "kind": "text"}


def _plain_step(
    encode_q: Callable[[dict[str, Any]], Tensor],
    encode_c: Callable[[dict[str, Any]], Tensor],
    loss_fn: Callable[..., Tensor],
    queries: dict[str, Any],
    candidates: dict[str, Any],
    chunk_size: int,
) -> Tensor:
    """The reference: every chunk encoded once *with* a graph, one loss, one backward.

    It encodes in the same chunks as GradCache so that dropout draws the same random
    numbers in the same order; with chunk_size == n it is the ordinary full-batch step.
    """
    q = torch.cat([encode_q(ch) for ch in split_batch(queries, chunk_size)])
    c = torch.cat([encode_c(ch) for ch in split_batch(candidates, chunk_size)])
    loss = loss_fn(q, c)
    loss.backward()
    return loss.detach()


def _grads(*modules: nn.Module) -> list[Tensor]:
    return [p.grad.clone() for m in modules for p in m.parameters()]


def _unime_with_scale() -> tuple[Callable[[Tensor, Tensor], Tensor], nn.Parameter]:
    # A learnable factor stands for a learnable temperature: the loss's own parameters
    # must receive their gradients as well.
    scale = nn.Parameter(torch.tensor(1.5))
    loss = UniMEHardNegativeLoss(temperature=0.1, num_negatives=3)
    return (lambda q, c: loss(q, c, torch.arange(q.shape[0])) * scale), scale


@pytest.mark.parametrize("chunk_size", [1, 2, N])
def test_shared_tower_matches_plain_step(chunk_size: int) -> None:
    queries, candidates = _batch(N), _batch(N)
    tower = Tower()
    loss_fn, scale = _unime_with_scale()
    torch.manual_seed(123)
    want_loss = _plain_step(tower.encode, tower.encode, loss_fn, queries, candidates, chunk_size)
    want, want_scale = _grads(tower), scale.grad.clone()
    rng_after_plain = torch.get_rng_state()

    tower.zero_grad()
    scale.grad = None
    torch.manual_seed(123)
    got_loss = GradCache(tower.encode, loss_fn, chunk_size=chunk_size).step(queries, candidates)
    # The replays run on saved RNG states and do not advance the global generator.
    assert torch.equal(torch.get_rng_state(), rng_after_plain)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scale.grad, want_scale, rtol=1e-5, atol=1e-5)
    for g, w in zip(_grads(tower), want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 2, N])
def test_two_towers_with_candidate_groups_and_soft_labels(chunk_size: int) -> None:
    # The UniME-V2 shape: n queries, n*c candidates (positive + hard negatives per query),
    # judge scores passed through as a loss keyword.
    queries, candidates = _batch(N), _batch(N * C)
    scores = torch.rand(N, C)
    q_tower, c_tower = Tower(), Tower(p=0.5)
    soft = SoftLabelLoss(temperature=0.05)

    def loss_fn(q: Tensor, c: Tensor, judge_scores: Tensor = scores) -> Tensor:
        return soft(q, c.view(q.shape[0], C, -1), judge_scores)

    torch.manual_seed(7)
    want_loss = _plain_step(
        q_tower.encode, c_tower.encode, loss_fn, queries, candidates, chunk_size
    )
    want = _grads(q_tower, c_tower)
    q_tower.zero_grad()
    c_tower.zero_grad()
    torch.manual_seed(7)
    cache = GradCache(q_tower.encode, loss_fn, chunk_size, encode_candidate=c_tower.encode)
    got_loss = cache.step(queries, candidates, judge_scores=scores)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-5)
    for g, w in zip(_grads(q_tower, c_tower), want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_without_rng_replay_dropout_masks_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shows the equality above depends on the RNG replay (dropout is really active).
    queries, candidates = _batch(N), _batch(N)
    tower = Tower(p=0.5)
    loss_fn, _ = _unime_with_scale()
    torch.manual_seed(5)
    _plain_step(tower.encode, tower.encode, loss_fn, queries, candidates, 2)
    want = _grads(tower)
    tower.zero_grad()
    monkeypatch.setattr(gradcache_module._RngState, "replay", lambda self: contextlib.nullcontext())
    torch.manual_seed(5)
    GradCache(tower.encode, loss_fn, chunk_size=2).step(queries, candidates)
    assert any(not torch.allclose(g, w, atol=1e-4) for g, w in zip(_grads(tower), want))


def test_query_only_step_with_distillation() -> None:
    texts = _batch(N)
    teacher = torch.randn(N, 7)
    tower = Tower()
    distill = DistillLoss(temperature=0.5)
    torch.manual_seed(3)
    want_loss = distill(torch.cat([tower.encode(ch) for ch in split_batch(texts, 4)]), teacher)
    want_loss.backward()
    want = _grads(tower)
    tower.zero_grad()
    torch.manual_seed(3)
    got_loss = GradCache(tower.encode, distill, chunk_size=4).step(texts, teacher=teacher)
    torch.testing.assert_close(got_loss, want_loss.detach(), rtol=1e-5, atol=1e-6)
    for g, w in zip(_grads(tower), want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_frozen_candidate_tower_and_no_sync_on_all_but_the_last_chunk() -> None:
    q_tower, c_tower = Tower(), Tower()
    c_tower.requires_grad_(False)
    entered: list[int] = []

    @contextlib.contextmanager
    def no_sync() -> Any:
        entered.append(1)
        yield

    loss_fn, _ = _unime_with_scale()
    cache = GradCache(q_tower.encode, loss_fn, 2, encode_candidate=c_tower.encode, no_sync=no_sync)
    cache.step(_batch(N), _batch(N))
    assert len(entered) == 3 + 3 - 1  # 6 re-forwards, the last one syncs
    assert all(p.grad is None for p in c_tower.parameters())
    assert all(p.grad is not None for p in q_tower.parameters())


def test_split_batch() -> None:
    batch = {"x": torch.arange(5), "names": list("abcde"), "mode": "q"}
    chunks = split_batch(batch, 2)
    assert [c["x"].tolist() for c in chunks] == [[0, 1], [2, 3], [4]]
    assert [c["names"] for c in chunks] == [["a", "b"], ["c", "d"], ["e"]]
    assert all(c["mode"] == "q" for c in chunks)
    pre = [{"x": torch.zeros(3)}, {"x": torch.zeros(1)}]
    assert split_batch(pre, 2) == pre  # already chunked: taken as is
    with pytest.raises(ValueError, match="pixel_values"):
        split_batch({"x": torch.zeros(4, 2), "pixel_values": torch.zeros(9, 3)}, 2)
    with pytest.raises(ValueError, match="chunk_size"):
        split_batch(batch, 0)


def test_bad_loss_and_encoder_outputs() -> None:
    tower = Tower()
    with pytest.raises(ValueError, match="scalar"):
        GradCache(tower.encode, lambda q, c: (q * c).sum(-1), 2).step(_batch(4), _batch(4))
    with pytest.raises(ValueError, match="query encoder"):
        GradCache(lambda ch: ch["x"].sum(-1), lambda q, c: q.sum(), 2).step(_batch(4), _batch(4))
    with pytest.raises(ValueError, match="chunk_size"):
        GradCache(tower.encode, lambda q, c: q.sum(), 0)
