"""The embedder inside the HTTP replica: dynamic batching with no handle hop.

The ingress replica holds the model itself, so an embeddings request never leaves the
process that parsed it: concurrent inputs queue in ``@serve.batch`` (an asyncio queue, no
Ray call) and each batch runs on the replica's one model thread, where tokenisation and
the forward pass happen, off the event loop that keeps reading requests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from uniembed.models import EmbedInput
from uniembed.models.embedder import Embedder
from uniembed.serving.batching import EmbedOutput, ItemFailure, embed_isolated, raise_failure
from uniembed.serving.config import EmbedderSection


def load_served_embedder(section: EmbedderSection) -> Embedder:
    """The configured embedder on this process's device; on CPU with
    ``section.threads`` torch threads."""
    from uniembed.models import load_embedder
    from uniembed.runtime import local_device
    from uniembed.serving.artifacts import resolve_model_source

    source = resolve_model_source(section.model, "embedder.model")
    device = local_device(section.device)
    if device == "cpu":
        import torch

        torch.set_num_threads(section.threads)
    return load_embedder(
        source, device=device, dtype=section.dtype,
        pooling=section.pooling, max_length=section.max_length,
    )  # fmt: skip


class EmbedderHost:
    """One embedder, batched in-process: :meth:`embed` takes one input, and the inputs of
    concurrent calls share forward passes (``deployment.max_batch_size`` inputs, waiting
    at most ``deployment.batch_wait_timeout_s`` for a batch to fill).

    A failing input fails alone (see :func:`~uniembed.serving.batching.embed_isolated`).
    """

    def __init__(self, model: Embedder, section: EmbedderSection) -> None:
        self.model = model
        self.name = section.name
        self.matryoshka = section.matryoshka
        self.micro_batch_size = section.micro_batch_size
        self.batch_sizes: Counter[int] = Counter()
        # One model thread: batches run one after the other while the event loop gathers
        # the next one; torch's own threads parallelise each forward pass.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._batch.set_max_batch_size(section.deployment.max_batch_size)
        self.wait_s = section.deployment.batch_wait_timeout_s
        self.adaptive_wait = section.adaptive_wait
        self._batch.set_batch_wait_timeout_s(self.next_batch_wait_s(0))

    def info(self) -> dict[str, Any]:
        """Name, width and modalities of the served model."""
        return {
            "name": self.name,
            "dim": self.model.dim,
            "supports_images": self.model.supports_images,
            "matryoshka": self.matryoshka,
        }

    def stats(self) -> dict[int, int]:
        """How many forward batches of each size (in inputs) have run."""
        return dict(self.batch_sizes)

    def _run(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        self.batch_sizes[len(inputs)] += 1
        return embed_isolated(self.model, inputs, self.micro_batch_size)

    def next_batch_wait_s(self, last_batch: int) -> float:
        """How long the next batch may wait to fill after a batch of ``last_batch`` inputs
        (0: none yet). Under concurrent load a short wait lets the event loop parse the
        requests that arrived during the last forward pass, so batches fill instead of the
        model thread running many small ones (32 clients on 2 cores: 69 -> 125 req/s with
        20 ms); a lone client (batches of one) is never made to wait."""
        if not self.adaptive_wait or last_batch > 1:
            return self.wait_s
        return 0.0

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _batch(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        self._batch.set_batch_wait_timeout_s(self.next_batch_wait_s(len(inputs)))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._run, list(inputs))

    async def embed(self, inp: EmbedInput) -> EmbedOutput:
        """``inp``'s embedding; ValueError when the model cannot take this input."""
        return raise_failure(await self._batch(inp))

    async def embed_all(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        """Every input of one request: queued one by one, so that they fill batches with
        those of other requests; each result or the reason that input failed."""
        results = await asyncio.gather(*(self._batch(inp) for inp in inputs))
        return list(results)
