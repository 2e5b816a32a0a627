"""What the HTTP app calls: the embedder, the reranker and the index.

The HTTP app (:mod:`.http_app`) only knows the :class:`Backend` protocol. In Serve it is a
:class:`ServeBackend` (the embedder in the ingress replica, the reranker and the retriever
behind handles); :class:`LocalBackend` runs the same app in one process over already loaded
objects (no batching), e.g. behind plain uvicorn.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np
import ray

from uniembed.models import EmbedInput
from uniembed.models.embedder import Embedder
from uniembed.reranker.fusion import Fusion
from uniembed.reranker.prompts import JUDGE_TEXT_TOKENS
from uniembed.serving.batching import EmbedOutput, ItemFailure, embed_isolated
from uniembed.serving.embedder_host import EmbedderHost
from uniembed.serving.rerank_budget import fit_pair
from uniembed.serving.retrieval import Hit, SearchIndex, index_info

Pair = tuple[str | None, Any]  # (text, decoded PIL image or None)


class Backend(Protocol):
    """The models behind the HTTP API.

    ``has_reranker`` / ``has_retriever`` say whether a part is served at all; ``*_info``
    return None when it is not, and may wait while it is still starting.
    """

    has_reranker: bool
    has_retriever: bool

    async def embedder_info(self) -> dict[str, Any]:
        """``{"name", "dim", "supports_images", "matryoshka"}``."""
        ...

    async def reranker_info(self) -> dict[str, Any] | None:
        """``{"name", "supports_images", "fusion"}`` or None; ``fusion`` is the
        :class:`~uniembed.reranker.fusion.Fusion` stored with the model, as a dict, or None."""
        ...

    async def retriever_info(self) -> dict[str, Any] | None:
        """``{"ready", "count", "dim", "source", "error"}`` or None; ``ready`` is false
        while the index is still being loaded or built."""
        ...

    async def embed_many(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        """Each input's embedding, or why that input failed (the others are unaffected)."""
        ...

    async def score(self, query: Pair, documents: list[Pair]) -> np.ndarray:
        """P(Yes) (len(documents),) per document."""
        ...

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """Top-``k`` hits of a (dim,) query vector; IndexNotReadyError while the index
        is being built."""
        ...


# A replica lost with its node or process, as Ray Serve reports it to a handle's caller:
# ActorDiedError (Ray's actor transport), ActorUnavailableError (the gRPC transport of the
# throughput-optimised mode, or a replica not reachable yet); both are RayActorErrors.
# Anything else (the model's own errors, a bad input) is final.
_LOST_REPLICA = (ray.exceptions.RayActorError,)
LOST_REPLICA_ATTEMPTS = 5


async def retry_lost_replica(
    call: Callable[[], Awaitable[Any]],
    attempts: int = LOST_REPLICA_ATTEMPTS,
    backoff_s: float = 0.1,
) -> Any:
    """Await ``call()``; when its replica was lost, call again (a new request, which the
    handle routes to a live replica: Serve drops a replica it saw die) after a short
    back-off, ``attempts`` calls at most. Only for idempotent calls (scoring, searching)."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except _LOST_REPLICA:
            if attempt == attempts:
                raise
            await asyncio.sleep(backoff_s * 2**attempt)


class ServeBackend:
    """A :class:`Backend` in the ingress replica: the embedder in-process (an
    :class:`~uniembed.serving.embedder_host.EmbedderHost`, no handle hop on the
    embeddings path), the Reranker and Retriever deployments behind handles."""

    def __init__(self, embedder: EmbedderHost, reranker: Any | None, retriever: Any | None) -> None:
        self.embedder = embedder
        self.reranker = reranker
        self.retriever = retriever
        self.has_reranker = reranker is not None
        self.has_retriever = retriever is not None

    async def embedder_info(self) -> dict[str, Any]:
        return self.embedder.info()

    async def reranker_info(self) -> dict[str, Any] | None:
        return None if self.reranker is None else await self.reranker.info.remote()

    async def retriever_info(self) -> dict[str, Any] | None:
        return None if self.retriever is None else await self.retriever.info.remote()

    async def embed_many(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        return await self.embedder.embed_many(inputs)

    async def score(self, query: Pair, documents: list[Pair]) -> np.ndarray:
        assert self.reranker is not None
        # Scoring and searching are idempotent: a call whose replica was lost (its node
        # gone) goes again, and the handle routes it to a replica still alive.
        return await retry_lost_replica(lambda: self.reranker.score.remote(query, documents))

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        assert self.retriever is not None
        return await retry_lost_replica(lambda: self.retriever.search.remote(vector, k))


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
        max_text_tokens: int = JUDGE_TEXT_TOKENS,
        fusion: Fusion | None = None,
    ) -> None:
        self.max_text_tokens = max_text_tokens  # rerank texts, as reranker.max_text_tokens
        self.embedder = embedder
        self.name = name or embedder.name
        self.matryoshka = matryoshka
        self.scorer = scorer
        if scorer is not None:
            scorer.max_text_tokens = max_text_tokens  # texts come cut to it already
        self.reranker_name = reranker_name
        self.fusion = fusion
        self.index = index
        self.has_reranker = scorer is not None
        self.has_retriever = index is not None

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
        fusion = None if self.fusion is None else dataclasses.asdict(self.fusion)
        return {"name": name, "supports_images": self.scorer.supports_images, "fusion": fusion}

    async def retriever_info(self) -> dict[str, Any] | None:
        if self.index is None:
            return None
        return index_info(self.index, "local")

    async def embed_many(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        return await asyncio.to_thread(embed_isolated, self.embedder, inputs)

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
