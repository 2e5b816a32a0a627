"""The embedder inside the HTTP replica: dynamic batching with no handle hop.

The ingress replica holds the model itself, so an embeddings request never leaves the
process that parsed it: concurrent requests queue whole in an :class:`~uniembed.serving.
batch_queue.BatchQueue` (asyncio, no Ray call) and each batch runs on the replica's one
model thread, where tokenisation and the forward pass happen, off the event loop that keeps
reading requests.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from uniembed.models import EmbedInput
from uniembed.models.embedder import Embedder
from uniembed.serving.batch_queue import BatchQueue
from uniembed.serving.batching import EmbedOutput, ItemFailure, embed_isolated
from uniembed.serving.config import EmbedderSection


def load_served_embedder(section: EmbedderSection) -> Embedder:
    """The configured embedder on this process's device; on CPU with ``section.threads``
    threads, its forward pass in ONNX Runtime where ``section.backend`` asks for it
    (``auto``: wherever it applies, see :mod:`uniembed.models.onnx_embedder`).

    Raises:
        ValueError: ``embedder.backend: onnx`` for a model or device it does not apply to.
    """
    from uniembed.models import load_embedder
    from uniembed.runtime import local_device
    from uniembed.serving.artifacts import resolve_model_source

    source = resolve_model_source(section.model, "embedder.model")
    device = local_device(section.device)
    if device == "cpu":
        import torch

        torch.set_num_threads(section.threads)
    options: dict[str, Any] = {"pooling": section.pooling, "max_length": section.max_length}
    if section.backend != "torch":
        from uniembed.models.onnx_embedder import load_onnx_embedder, onnx_unsupported_reason
        from uniembed.models.registry import inspect_model

        reason = onnx_unsupported_reason(inspect_model(source).family, device)
        if reason is None and section.dtype not in (None, "float32"):
            reason = f"it runs float32 only (embedder.dtype is {section.dtype})"
        if reason is None:
            return load_onnx_embedder(source, section.threads, **options)
        if section.backend == "onnx":
            raise ValueError(f"embedder.backend: onnx does not apply here: {reason} (set torch)")
    return load_embedder(source, device=device, dtype=section.dtype, **options)


BATCH_INPUTS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
BATCH_MS = [5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


def _batch_metrics() -> Callable[[int, int, float], None] | None:
    """Ray metrics of the embedder's batches (Prometheus and the dashboard, as
    ``ray_uniembed_serve_embed_*``): inputs per batch, the model's milliseconds per batch,
    inputs waiting; None outside Ray."""
    import ray

    if not ray.is_initialized():
        return None
    from ray.util.metrics import Gauge, Histogram

    sizes = Histogram("uniembed_serve_embed_batch_inputs", "inputs per embedder batch",
                      boundaries=BATCH_INPUTS)  # fmt: skip
    times = Histogram("uniembed_serve_embed_batch_ms", "milliseconds per embedder batch",
                      boundaries=BATCH_MS)  # fmt: skip
    queued = Gauge("uniembed_serve_embed_queued_inputs", "inputs waiting for a batch")

    def record(size: int, waiting: int, seconds: float) -> None:
        sizes.observe(size)
        times.observe(1000 * seconds)
        queued.set(waiting)

    return record


class EmbedderHost:
    """One embedder, batched in-process: the inputs of concurrent calls share forward
    passes (``deployment.max_batch_size`` inputs, waiting at most
    ``deployment.batch_wait_timeout_s`` for a batch to fill, see :class:`BatchQueue`).

    A failing input fails alone (see :func:`~uniembed.serving.batching.embed_isolated`).
    """

    def __init__(self, model: Embedder, section: EmbedderSection) -> None:
        self.model = model
        self.name = section.name
        self.matryoshka = section.matryoshka
        self.micro_batch_size = section.micro_batch_size
        # One model thread: batches run one after the other while the event loop gathers
        # the next one; torch's own threads parallelise each forward pass.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self.queue: BatchQueue[EmbedInput, EmbedOutput | ItemFailure] = BatchQueue(
            self._run,
            self._thread,
            max_batch_size=section.deployment.max_batch_size,
            wait_s=section.deployment.batch_wait_timeout_s,
            adaptive_wait=section.adaptive_wait,
            on_batch=_batch_metrics(),
        )

    def info(self) -> dict[str, Any]:
        """Name, width and modalities of the served model."""
        return {
            "name": self.name,
            "dim": self.model.dim,
            "supports_images": self.model.supports_images,
            "matryoshka": self.matryoshka,
            "backend": getattr(self.model, "backend", "torch"),  # an Embedder may not say
        }

    def stats(self) -> dict[int, int]:
        """How many forward batches of each size (in inputs) have run."""
        return dict(self.queue.batch_sizes)

    def _run(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        return embed_isolated(self.model, inputs, self.micro_batch_size)

    async def embed_many(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        """Every input of one request, queued as one entry (they fill batches with those
        of other requests); each result or the reason that input failed."""
        return await self.queue.submit(inputs)
