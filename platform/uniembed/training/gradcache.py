"""GradCache: contrastive losses over a large batch with the memory of one small chunk.

A contrastive loss couples every query with every candidate, so the batch cannot simply be
split into micro-batches. GradCache (Gao et al., "Scaling Deep Contrastive Learning Batch
Size under Memory Limited Setup") splits the *encoder* work instead:

1. encode every chunk without a graph and keep only the representations (``(n, d)``);
2. compute the loss on the representations and backpropagate to them (cheap);
3. re-encode each chunk with a graph and call ``reps.backward(cached_grad)`` on it.

The parameter gradients equal those of the plain full-batch step, provided the second
forward of a chunk computes the same function as the first: the RNG state (CPU and the
CUDA devices in use) is saved before each chunk in step 1 and restored for its replay in
step 3, so dropout masks match.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

Batch = Mapping[str, Any]
Encode = Callable[[Batch], Tensor]


def _batch_size(batch: Batch) -> int:
    sizes = {}
    for key, value in batch.items():
        if isinstance(value, Tensor) and value.dim() > 0:
            sizes[key] = value.shape[0]
        elif isinstance(value, (list, tuple)):
            sizes[key] = len(value)
    if not sizes:
        raise ValueError("batch: no tensor or list value to split along dim 0")
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"batch: values differ in their dim-0 size {sizes}; pass pre-chunked batches "
            "(a list of dicts) when a field is not one row per item"
        )
    return next(iter(sizes.values()))


def split_batch(batch: Batch | Sequence[Batch], chunk_size: int) -> list[dict[str, Any]]:
    """Split a dict batch into chunks of at most ``chunk_size`` rows along dim 0.

    Tensors (dim >= 1) and lists/tuples are sliced; other values (strings, None, flags) are
    shared by every chunk. A list of dicts is taken as already chunked and returned as is,
    for inputs that are not one row per item (e.g. Qwen2-VL's flattened ``pixel_values``).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if not isinstance(batch, Mapping):
        chunks = [dict(c) for c in batch]
        if not chunks:
            raise ValueError("batch: an empty list of chunks")
        return chunks
    n = _batch_size(batch)
    chunks = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        chunk = {}
        for key, value in batch.items():
            sliceable = (isinstance(value, Tensor) and value.dim() > 0) or isinstance(
                value, (list, tuple)
            )
            chunk[key] = value[start:stop] if sliceable else value
        chunks.append(chunk)
    return chunks


def _cuda_devices(chunk: Batch) -> list[int]:
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return []
    devices = {torch.cuda.current_device()}
    devices.update(v.device.index for v in chunk.values() if isinstance(v, Tensor) and v.is_cuda)
    return sorted(d for d in devices if d is not None)


class _RngState:
    """The CPU and CUDA RNG states at one moment, replayable later."""

    def __init__(self, devices: list[int]) -> None:
        self.devices = devices
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in devices]

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        # fork_rng puts the global state back afterwards: the replay does not advance it.
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.devices, self.cuda):
                torch.cuda.set_rng_state(state, device)
            yield


class GradCache:
    """One contrastive training step over a big batch, encoded ``chunk_size`` rows at a time.

    Args:
        encode_query: ``encode(chunk) -> (b, d)`` for a dict chunk of queries.
        loss_fn: ``loss_fn(query_reps (n, d), candidate_reps (m, d), **loss_kwargs)`` -> scalar
            (``loss_fn(query_reps, **loss_kwargs)`` when a step has no candidates). Gather
            across ranks (``gather_with_grad``) and reshape candidates to ``(n, c, d)``
            inside it; its own parameters (a learnable temperature) get their gradients.
        chunk_size: query rows per forward.
        encode_candidate: the candidate encoder; ``None`` uses ``encode_query``.
        candidate_chunk_size: candidate rows per forward; ``None`` uses ``chunk_size``.
        no_sync: a context factory such as ``ddp_model.no_sync``; every re-forward except
            the last runs in it, so DDP all-reduces once, after the last chunk. With two DDP
            towers pass a factory that enters both.

    Example:
        >>> gc = GradCache(model.encode, lambda q, c: loss(q, c, labels), chunk_size=2)
        >>> loss_value = gc.step({"input_ids": q_ids}, {"input_ids": c_ids})
        >>> optimizer.step()
    """

    def __init__(
        self,
        encode_query: Encode,
        loss_fn: Callable[..., Tensor],
        chunk_size: int,
        encode_candidate: Encode | None = None,
        candidate_chunk_size: int | None = None,
        no_sync: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if candidate_chunk_size is not None and candidate_chunk_size < 1:
            raise ValueError(f"candidate_chunk_size must be >= 1, got {candidate_chunk_size}")
        self.encode_query = encode_query
        self.encode_candidate = encode_candidate or encode_query
        self.loss_fn = loss_fn
        self.chunk_size = chunk_size
        self.candidate_chunk_size = candidate_chunk_size or chunk_size
        self.no_sync = no_sync

    @staticmethod
    def _encode_without_graph(
        encode: Encode, chunks: list[dict[str, Any]], side: str
    ) -> tuple[Tensor, list[_RngState]]:
        reps, states = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(_RngState(_cuda_devices(chunk)))
                rep = encode(chunk)
                if not isinstance(rep, Tensor) or rep.dim() != 2:
                    raise ValueError(f"{side} encoder: expected a (b, d) tensor, got {rep!r:.80}")
                reps.append(rep)
        return torch.cat(reps, dim=0).requires_grad_(True), states

    def step(
        self,
        query_batch: Batch | Sequence[Batch],
        candidate_batch: Batch | Sequence[Batch] | None = None,
        **loss_kwargs: Any,
    ) -> Tensor:
        """Run forward and backward; parameter ``.grad`` are accumulated, as by ``backward``.

        Returns the loss value, detached. Call ``optimizer.step()`` afterwards.
        """
        jobs: list[tuple[Encode, list[dict[str, Any]], list[_RngState], Tensor]] = []
        q_chunks = split_batch(query_batch, self.chunk_size)
        q_reps, q_states = self._encode_without_graph(self.encode_query, q_chunks, "query")
        reps = [q_reps]
        jobs.append((self.encode_query, q_chunks, q_states, q_reps))
        if candidate_batch is not None:
            c_chunks = split_batch(candidate_batch, self.candidate_chunk_size)
            c_reps, c_states = self._encode_without_graph(
                self.encode_candidate, c_chunks, "candidate"
            )
            reps.append(c_reps)
            jobs.append((self.encode_candidate, c_chunks, c_states, c_reps))

        loss = self.loss_fn(*reps, **loss_kwargs)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar tensor, got {loss!r:.80}")
        loss.backward()

        total = sum(len(chunks) for _, chunks, _, _ in jobs)
        done = 0
        for encode, chunks, states, rep_all in jobs:
            offset = 0
            for chunk, state in zip(chunks, states):
                done += 1
                # Under DDP every backward but the last must skip the all-reduce.
                if self.no_sync is not None and done < total:
                    sync: contextlib.AbstractContextManager[Any] = self.no_sync()
                else:
                    sync = contextlib.nullcontext()
                with sync, state.replay():
                    rep = encode(chunk)
                    grad = rep_all.grad
                    rows = slice(offset, offset + rep.shape[0])
                    offset += rep.shape[0]
                    if rep.shape != rep_all[rows].shape:
                        raise RuntimeError(
                            f"encoder returned shape {tuple(rep.shape)} on the replay of a "
                            f"chunk that gave {tuple(rep_all[rows].shape)} the first time"
                        )
                    if grad is None or not rep.requires_grad:
                        continue  # the loss ignores this side, or the encoder is frozen
                    rep.backward(grad[rows].to(rep.dtype))
        return loss.detach()
