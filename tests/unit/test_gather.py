"""gather_with_grad across two real CPU processes (gloo) against one process on the whole batch.

One spawn runs every distributed scenario (process start-up dominates the cost); each
scenario's numbers come back through files and are checked here, in the parent.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from uniembed.losses import UniMEHardNegativeLoss
from uniembed.training import GradCache, gather_with_grad, world_size

WORLD = 2
SIZES = (3, 5)  # unequal local batches: rank 0 holds rows 0-2, rank 1 rows 3-7
DIM_IN = 6


def _loss_fn() -> UniMEHardNegativeLoss:
    # k = 3 of 7 possible negatives and a wide margin, so the filter and top-k both act.
    return UniMEHardNegativeLoss(temperature=0.1, margin=0.1, num_negatives=3)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(DIM_IN, 8), nn.Tanh(), nn.Linear(8, 4))


def _local_rows(rank: int) -> slice:
    start = sum(SIZES[:rank])
    return slice(start, start + SIZES[rank])


def _naive_gather(t: torch.Tensor) -> torch.Tensor:
    """What the released UniME code does: all_gather into fresh buffers, no local slot."""
    buffers = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(buffers, t)
    return torch.cat(buffers)


def _worker(rank: int, store: str, state: dict, x: torch.Tensor, y: torch.Tensor, out: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # A file rendezvous: no port picked ahead that another process on a busy machine could
    # take before rank 0 binds it (the spawned ranks then aborted).
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=300),
    )
    try:
        rows = _local_rows(rank)
        labels = torch.arange(sum(SIZES))
        loss_fn = _loss_fn()
        result: dict[str, Any] = {"world_size": world_size()}

        # 1. gather_with_grad: gradients w.r.t. local embeddings and, after DDP-style
        #    averaging of (world_size * loss), w.r.t. the shared parameters.
        model = _model()
        model.load_state_dict(state)
        q, t = model(x[rows]), model(y[rows])
        gq, gt = gather_with_grad(q), gather_with_grad(t)
        loss = loss_fn(gq, gt, labels)
        result["loss"] = loss.detach()
        result["gathered_q"] = gq.detach()
        result["grad_q"], result["grad_t"] = torch.autograd.grad(loss, [q, t], retain_graph=True)
        (loss * world_size()).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= WORLD  # what DDP does: the mean over ranks
        result["param_grads"] = [p.grad.clone() for p in model.parameters()]

        # 2. the naive gather keeps no graph: the loss has nothing to differentiate. (It also
        #    needs equal shapes on every rank: use the first min(SIZES) rows of each.)
        m = min(SIZES)
        qn, tn, labels_n = q[:m], t[:m], torch.arange(m * WORLD)
        naive = loss_fn(_naive_gather(qn), _naive_gather(tn), labels_n)
        result["naive_requires_grad"] = naive.requires_grad
        half = loss_fn(gather_with_grad(qn), _naive_gather(tn), labels_n)  # targets naive
        result["naive_half_requires_grad"] = half.requires_grad
        result["naive_grad_t"] = torch.autograd.grad(half, [t], allow_unused=True)[0]

        # 3. GradCache under DDP (no_sync on all but the last chunk), chunks of 2.
        ddp_model = _model()
        ddp_model.load_state_dict(state)
        # broadcast_buffers=False: ranks run different numbers of chunk forwards, and a
        # buffer broadcast in each forward would then wait forever on the other rank.
        ddp = nn.parallel.DistributedDataParallel(ddp_model, broadcast_buffers=False)
        cache = GradCache(
            lambda chunk: ddp(chunk["x"]),
            lambda qq, cc: (
                loss_fn(gather_with_grad(qq), gather_with_grad(cc), labels) * world_size()
            ),
            chunk_size=2,
            no_sync=ddp.no_sync,
        )
        result["cached_loss"] = cache.step({"x": x[rows]}, {"x": y[rows]})
        result["ddp_param_grads"] = [p.grad.clone() for p in ddp_model.parameters()]

        # 4. rows without elements (a batch whose rows have zero mined negatives).
        empty = q.new_zeros((q.shape[0], 0, q.shape[1]))
        result["empty_shape"] = tuple(gather_with_grad(empty).shape)

        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.manual_seed(0)
    n = sum(SIZES)
    x, y = torch.randn(n, DIM_IN), torch.randn(n, DIM_IN)
    state = _model().state_dict()
    out = tmp_path_factory.mktemp("gather")
    store = str(out / "rendezvous")
    mp.spawn(_worker, args=(store, state, x, y, str(out)), nprocs=WORLD, join=True)
    ranks = [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]

    # The reference: one process, the whole batch.
    model = _model()
    model.load_state_dict(state)
    q, t = model(x), model(y)
    loss = _loss_fn()(q, t, torch.arange(n))
    grad_q, grad_t = torch.autograd.grad(loss, [q, t], retain_graph=True)
    loss.backward()
    ref = {
        "loss": loss.detach(),
        "q": q.detach(),
        "grad_q": grad_q,
        "grad_t": grad_t,
        "param_grads": [p.grad.clone() for p in model.parameters()],
    }
    return {"ranks": ranks, "ref": ref}


def test_gathered_batch_is_the_global_batch_in_rank_order(setup: dict[str, Any]) -> None:
    for res in setup["ranks"]:
        assert res["world_size"] == WORLD
        torch.testing.assert_close(res["gathered_q"], setup["ref"]["q"])
        torch.testing.assert_close(res["loss"], setup["ref"]["loss"])


def test_local_embedding_gradients_equal_the_single_process_ones(setup: dict[str, Any]) -> None:
    # No scaling on the embeddings: rank r's gradient is exactly dL/dX_r of the global loss.
    ref = setup["ref"]
    for rank, res in enumerate(setup["ranks"]):
        rows = _local_rows(rank)
        assert res["grad_q"].abs().sum() > 0
        torch.testing.assert_close(res["grad_q"], ref["grad_q"][rows], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(res["grad_t"], ref["grad_t"][rows], rtol=1e-5, atol=1e-6)


def test_ddp_mean_of_world_size_times_loss_equals_single_process(setup: dict[str, Any]) -> None:
    ref = setup["ref"]["param_grads"]
    for res in setup["ranks"]:
        for got, want in zip(res["param_grads"], ref):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_naive_all_gather_gives_no_gradient(setup: dict[str, Any]) -> None:
    for res in setup["ranks"]:
        # Both sides gathered naively (the released code): the loss is a constant.
        assert res["naive_requires_grad"] is False
        # Only the targets gathered naively: the queries still train, the targets get nothing.
        assert res["naive_half_requires_grad"] is True
        assert res["naive_grad_t"] is None


def test_gradcache_under_ddp_equals_single_process_plain_step(setup: dict[str, Any]) -> None:
    ref = setup["ref"]
    for res in setup["ranks"]:
        torch.testing.assert_close(res["cached_loss"], ref["loss"] * WORLD)
        for got, want in zip(res["ddp_param_grads"], ref["param_grads"]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_identity_without_a_process_group() -> None:
    assert not dist.is_initialized()
    t = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(t) is t
    assert world_size() == 1


def test_rows_without_elements_gather_to_the_global_shape(setup: dict[str, Any]) -> None:
    for r in setup["ranks"]:
        assert r["empty_shape"] == (sum(SIZES), 0, r["gathered_q"].shape[1])
