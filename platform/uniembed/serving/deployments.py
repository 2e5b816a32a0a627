"""The model-holding Serve deployments: Embedder, Reranker and Retriever.

Each batches with ``@serve.batch``; batch size and wait come from the config (set on the
replica at start-up) and ``max_ongoing_requests`` is raised by the app builder so that
batches can fill. The Embedder takes *lists* of inputs (the ingress coalesces concurrent
requests into one call, see :mod:`.backend`) and merges the lists that arrive together,
counting the batch size in inputs. Failures are isolated per item (see :mod:`.batching`).
Model calls run in a worker thread so that the replica keeps collecting the next batch.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import numpy as np
from ray import serve

from uniembed import storage
from uniembed.models import EmbedInput
from uniembed.runtime import local_device
from uniembed.serving.artifacts import resolve_model_source
from uniembed.serving.batching import (
    EmbedOutput,
    ItemFailure,
    count_inputs,
    embed_isolated,
    raise_failure,
    run_isolated,
    split_like,
)
from uniembed.serving.config import DeploymentSection, ServeConfig
from uniembed.serving.documents import embed_inputs
from uniembed.serving.rerank_budget import batch_cost, fit_pair, request_cost
from uniembed.serving.retrieval import (
    Hit,
    SearchIndex,
    demo_documents,
    index_over,
    load_search_index,
)

Pair = tuple[str | None, Any]  # (text, PIL image or None)
DEMO_CHUNK = 64  # documents per call when the start-up index is embedded


def _configure_batching(method: Any, section: DeploymentSection) -> None:
    method.set_max_batch_size(section.max_batch_size)
    method.set_batch_wait_timeout_s(section.batch_wait_timeout_s)


@serve.deployment(name="Embedder")
class EmbedderDeployment:
    """Holds one embedder; merges the input lists that queue into one forward pass."""

    def __init__(self, cfg: ServeConfig) -> None:
        from uniembed.models import load_embedder

        storage.configure(cfg.storage)
        section = cfg.embedder
        source = resolve_model_source(section.model, "embedder.model")
        device = local_device(section.device)
        if device == "cpu":
            import torch

            torch.set_num_threads(section.threads)
        self.model = load_embedder(
            source, device=device, dtype=section.dtype,
            pooling=section.pooling, max_length=section.max_length,
        )  # fmt: skip
        self.name = section.name
        self.matryoshka = section.matryoshka
        self.micro_batch_size = section.micro_batch_size
        self.batch_sizes: Counter[int] = Counter()
        self._embed_lists.set_max_batch_size(section.deployment.max_batch_size)

    def info(self) -> dict[str, Any]:
        """Name, width and modalities of the served model."""
        return {
            "name": self.name,
            "dim": self.model.dim,
            "supports_images": self.model.supports_images,
            "matryoshka": self.matryoshka,
        }

    def stats(self) -> dict[int, int]:
        """How many forward batches of each size (in inputs) this replica has run."""
        return dict(self.batch_sizes)

    # The ingress already waited batch_wait_timeout_s to fill each list; here the lists
    # queued while the last forward pass ran are merged at once, without waiting more.
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0, batch_size_fn=count_inputs)
    async def _embed_lists(
        self, lists: list[list[EmbedInput]]
    ) -> list[list[EmbedOutput | ItemFailure]]:
        flat = [inp for part in lists for inp in part]
        self.batch_sizes[len(flat)] += 1
        outputs = await asyncio.to_thread(embed_isolated, self.model, flat, self.micro_batch_size)
        return split_like(outputs, lists)

    async def embed_batch(self, inputs: list[EmbedInput]) -> list[EmbedOutput | ItemFailure]:
        """Per input, its embedding or the reason it failed (one bad input fails alone).

        Lists that arrive together share forward passes; the ingress sends one list per
        batch of concurrent HTTP requests.
        """
        if not inputs:
            return []
        return await self._embed_lists(list(inputs))

    async def embed_many(self, inputs: list[EmbedInput]) -> np.ndarray:
        """(n, dim) embeddings of a whole list at once: for bulk work such as an index."""
        return await asyncio.to_thread(self.model.embed, inputs)


@serve.deployment(name="Reranker")
class RerankerDeployment:
    """Holds one judge; batches rerank requests and scores each with its shared prefix."""

    def __init__(self, cfg: ServeConfig) -> None:
        from uniembed.reranker.scorer import JudgeScorer

        storage.configure(cfg.storage)
        section = cfg.reranker
        source = resolve_model_source(section.model, "reranker.model")
        self.scorer = JudgeScorer.load(source, device=local_device(section.device))
        self.name = section.name
        self.score_batch_size = section.score_batch_size
        self.max_text_tokens = section.max_text_tokens
        self.max_batch_tokens = section.max_batch_tokens
        _configure_batching(self._score_batch, section.deployment)
        self._score_batch.set_max_batch_size(section.max_batch_tokens)

    def info(self) -> dict[str, Any]:
        """Name and modalities of the served reranker."""
        return {"name": self.name, "supports_images": self.scorer.supports_images}

    def _score_one(self, request: tuple[Pair, list[Pair], int]) -> np.ndarray:
        from uniembed.reranker.scorer import JudgeInput

        (q_text, q_image), docs, _ = request
        query = JudgeInput(text=q_text, image=q_image)
        candidates = [JudgeInput(text=t, image=i) for t, i in docs]
        scores = self.scorer.score(query, candidates, batch_size=self.score_batch_size)
        return np.asarray(scores, dtype=np.float32)

    def _score_all(self, requests: list[tuple[Pair, list[Pair], int]]) -> list[Any]:
        # Each request has its own query (its own shared prefix): score them in turn.
        return run_isolated(requests, lambda rs: [self._score_one(r) for r in rs], self._score_one)

    # Bounded in tokens, not requests (see rerank_budget): set from reranker.max_batch_tokens.
    @serve.batch(max_batch_size=8192, batch_wait_timeout_s=0.01, batch_size_fn=batch_cost)
    async def _score_batch(self, requests: list[tuple[Pair, list[Pair], int]]) -> list[Any]:
        return await asyncio.to_thread(self._score_all, requests)

    async def score(self, query: Pair, documents: list[Pair]) -> np.ndarray:
        """P(Yes) (len(documents),) of each document for the query; texts are cut to
        ``reranker.max_text_tokens`` tokens first."""
        tok, cap = self.scorer.tokenizer, self.max_text_tokens
        query = fit_pair(tok, query, cap)
        documents = [fit_pair(tok, d, cap) for d in documents]
        cost = request_cost(query, documents, self.max_batch_tokens)
        return raise_failure(await self._score_batch((query, documents, cost)))


@serve.deployment(name="Retriever")
class RetrieverDeployment:
    """Holds the FAISS index and documents; batches query vectors into one search."""

    async def __init__(self, cfg: ServeConfig, embedder: Any) -> None:
        storage.configure(cfg.storage)
        section = cfg.retriever
        info = await embedder.info.remote()
        if section.index:
            self.index: SearchIndex = await asyncio.to_thread(
                load_search_index, section, info["dim"]
            )
        else:
            # No index configured: embed the demo corpus through the Embedder deployment,
            # so that the cluster holds one copy of the model.
            docs = await asyncio.to_thread(demo_documents, section)
            inputs = embed_inputs(docs)
            parts = [
                await embedder.embed_many.remote(inputs[i : i + DEMO_CHUNK])
                for i in range(0, len(inputs), DEMO_CHUNK)
            ]
            self.index = await asyncio.to_thread(index_over, docs, np.concatenate(parts))
        self.source = section.index or "demo"
        _configure_batching(self._search_batch, section.deployment)

    def info(self) -> dict[str, Any]:
        """Size, width and origin of the index."""
        return {"count": len(self.index), "dim": self.index.dim, "source": self.source}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def _search_batch(self, requests: list[tuple[np.ndarray, int]]) -> list[list[Hit]]:
        queries = np.stack([q for q, _ in requests]).astype(np.float32)
        return self.index.search_many(queries, [k for _, k in requests])

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """Top-``k`` hits for one query vector (dim,)."""
        return await self._search_batch((vector, k))
