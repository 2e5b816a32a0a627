"""All-gather across ranks that keeps the local tensor's autograd graph.

``torch.distributed.all_gather`` writes into fresh buffers: the result has no graph, so a
loss computed on it gives no gradient to this rank's encoder (the released UniME code
trains nothing this way). :func:`gather_with_grad` puts the local tensor back at this
rank's slot, so the loss on the global batch differentiates into the local embeddings.

Scaling convention (what makes distributed training match one process on the whole batch):
every rank computes the *same* loss ``L`` on the gathered global batch. On rank ``r`` the
gradient w.r.t. its local embeddings ``X_r`` is then exactly ``dL/dX_r`` of the
single-process loss (the other ranks' slots are constants here, but their values are the
same). Parameter gradients of a shared model are ``sum_r dL/dX_r dX_r/dtheta``: a *sum*
over ranks. DDP *averages* gradients across ranks, so multiply the loss by
:func:`world_size` before ``backward`` (or all-reduce with SUM instead of AVG) to recover
the single-process gradient. ``tests/unit/test_gather.py`` checks both statements.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a torch.distributed process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks in the default group; 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group; 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` from every rank along dim 0, keeping this rank's graph.

    Args:
        t: ``(b_r, ...)`` this rank's tensor. ``b_r`` may differ between ranks; the
            trailing dimensions and the dtype must agree.

    Returns:
        ``(sum_r b_r, ...)``: rank 0's rows, then rank 1's, ... . The slice of this rank is
        ``t`` itself (with its autograd graph); the others are constants. Without a process
        group (or with one rank) ``t`` is returned unchanged.
    """
    if not is_distributed():
        return t
    if t.dim() == 0:
        raise ValueError("gather_with_grad: t must have a batch dimension, got a scalar")
    ws, me = dist.get_world_size(), dist.get_rank()
    # Sizes first: all_gather needs equal shapes, so unequal batches are padded then trimmed.
    size = torch.tensor([t.shape[0]], dtype=torch.long, device=t.device)
    sizes = [torch.zeros_like(size) for _ in range(ws)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    if math.prod(t.shape[1:]) == 0 or longest == 0:
        # Rows without elements (e.g. zero negatives per row): nothing to exchange, and
        # gloo cannot all_gather empty tensors.
        parts = [t if r == me else t.new_zeros((c, *t.shape[1:])) for r, c in enumerate(counts)]
        return torch.cat(parts, dim=0)
    local = t.detach()
    if t.shape[0] < longest:
        pad = local.new_zeros((longest - t.shape[0], *t.shape[1:]))
        local = torch.cat([local, pad], dim=0)
    buffers = [torch.empty_like(local) for _ in range(ws)]
    dist.all_gather(buffers, local.contiguous())
    parts = [buf[:n] for buf, n in zip(buffers, counts)]
    parts[me] = t  # the point of this function: the local slot keeps the graph
    return torch.cat(parts, dim=0)
