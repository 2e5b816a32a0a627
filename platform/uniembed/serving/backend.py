"""What the HTTP app calls: the three deployments behind handles, or local objects.

The HTTP app (:mod:`.http_app`) only knows the :class:`Backend` protocol. In Serve it is a
:class:`HandleBackend` over deployment handles; :class:`LocalBackend` runs the same app
in one process over already loaded objects (no batching), e.g. behind plain uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np
import ray
from ray import serve

from uniembed.models import EmbedInput
from uniembed.models.embedder import Embedder
from uniembed.serving.batching import EmbedOutput, ItemFailure, embed_isolated, raise_failure
from uniembed.serving.rerank_budget import fit_pair
from uniembed.serving.retrieval import Hit, SearchIndex

Pair = tuple[str | None, Any]  # (text, decoded PIL image or None)


class Backend(Protocol):
    """The models behind the HTTP API. ``*_info`` return None when the part is disabled."""

    async def embedder_info(self) -> dict[str, Any]:
        """``{"name", "dim", "supports_images", "matryoshka"}``."""
        ...

    async def reranker_info(self) -> dict[str, Any] | None:
        """``{"name"}`` or None."""
        ...

    async def retriever_info(self) -> dict[str, Any] | None:
        """``{"count", "dim", "source"}`` or None."""
        ...

    async def embed(self, inp: EmbedInput) -> EmbedOutput:
        """One input's embedding; ValueError when the model cannot take the input."""
        ...

    async def score(self, query: Pair, documents: list[Pair]) -> np.ndarray:
        """P(Yes) (len(documents),) per document."""
        ...

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """Top-``k`` hits of a (dim,) query vector."""
        ...


# A replica lost with its node or process; anything else (the model's own errors) is final.
_LOST_REPLICA = (ray.exceptions.RayActorError,)  # ActorDiedError, ActorUnavailableError
LOST_REPLICA_ATTEMPTS = 5


async def retry_lost_replica(call: Callable[[], Awaitable[Any]]) -> Any:
    """Await ``call()``; when its replica was lost, call again (a new request, routed to a
    live replica) after a short back-off, at most ``LOST_REPLICA_ATTEMPTS`` times."""
    for attempt in range(1, LOST_REPLICA_ATTEMPTS + 1):
        try:
            return await call()
        except _LOST_REPLICA:
            if attempt == LOST_REPLICA_ATTEMPTS:
                raise
            await asyncio.sleep(0.1 * 2**attempt)


class HandleBackend:
    """A :class:`Backend` over the Embedder, Reranker and Retriever deployment handles.

    Concurrent :meth:`embed` calls (the inputs of all HTTP requests in flight on this
    ingress replica) are coalesced into one ``embed_batch`` call per batch: one handle
    round trip per batch instead of one per input, which on a busy replica costs more CPU
    than a small model's forward pass. ``max_batch_size=1`` sends each input alone.
    """

    def __init__(
        self,
        embedder: Any,
        reranker: Any | None,
        retriever: Any | None,
        *,
        max_batch_size: int = 32,
        batch_wait_timeout_s: float = 0.005,
    ) -> None:
        self.embedder = embedder
        self.reranker = reranker
        self.retriever = retriever
        self._embed_coalesced.set_max_batch_size(max_batch_size)
        self._embed_coalesced.set_batch_wait_timeout_s(batch_wait_timeout_s)

    async def embedder_info(self) -> dict[str, Any]:
        return await self.embedder.info.remote()

    async def reranker_info(self) -> dict[str, Any] | None:
        return None if self.reranker is None else await self.reranker.info.remote()

    async def retriever_info(self) -> dict[str, Any] | None:
        return None if self.retriever is None else await self.retriever.info.remote()

    # Several batches in flight: the next ones are collected and sent while the Embedder
    # still computes, so its queue never runs dry between round trips (it merges what
    # queued), and max_batch_size=1 still lets concurrent inputs reach it side by side.
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, max_concurrent_batches=8)
    async def _embed_coalesced(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        # Embedding is idempotent: a batch whose replica died (its node lost) goes again,
        # and the handle routes it to a replica still alive.
        return await retry_lost_replica(lambda: self.embedder.embed_batch.remote(inputs))

    async def embed(self, inp: EmbedInput) -> EmbedOutput:
        return raise_failure(await self._embed_coalesced(inp))

    async def score(self, query: Pair, documents: list[Pair]) -> np.ndarray:
        assert self.reranker is not None
        return await self.reranker.score.remote(query, documents)

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        assert self.retriever is not None
        return await self.retriever.search.remote(vector, k)


class LocalBackend:
    """A :class:`Backend` over in-process objects; each call runs alone in a thread."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        name: str | None = None,
        matryoshka: bool = False,
        scorer: Any | None = None,
        reranker_name: str | None = None,
        index: SearchIndex | None = None,
        max_text_tokens: int = 512,
    ) -> None:
        self.max_text_tokens = max_text_tokens  # rerank texts, as reranker.max_text_tokens
        self.embedder = embedder
        self.name = name or embedder.name
        self.matryoshka = matryoshka
        self.scorer = scorer
        self.reranker_name = reranker_name
        self.index = index

    async def embedder_info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.embedder.dim,
            "supports_images": self.embedder.supports_images,
            "matryoshka": self.matryoshka,
        }

    async def reranker_info(self) -> dict[str, Any] | None:
        if self.scorer is None:
            return None
        name = self.reranker_name or self.scorer.name
        return {"name": name, "supports_images": self.scorer.supports_images}

    async def retriever_info(self) -> dict[str, Any] | None:
        if self.index is None:
            return None
        return {"count": len(self.index), "dim": self.index.dim, "source": "local"}

    async def embed(self, inp: EmbedInput) -> EmbedOutput:
        (result,) = await asyncio.to_thread(embed_isolated, self.embedder, [inp])
        return raise_failure(result)

    async def score(self, query: Pair, documents: list[Pair]) -> np.ndarray:
        from uniembed.reranker.scorer import JudgeInput

        assert self.scorer is not None
        tok, cap = self.scorer.tokenizer, self.max_text_tokens
        query = fit_pair(tok, query, cap)
        q = JudgeInput(text=query[0], image=query[1])
        docs = [JudgeInput(text=t, image=i) for t, i in (fit_pair(tok, d, cap) for d in documents)]
        return np.asarray(await asyncio.to_thread(self.scorer.score, q, docs), np.float32)

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        assert self.index is not None
        return self.index.search_many(vector[None, :], [k])[0]
