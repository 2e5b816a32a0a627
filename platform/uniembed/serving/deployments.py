"""The Serve deployments behind the ingress: Reranker and Retriever.

(The embedder lives in the ingress replica itself, see :mod:`.embedder_host`.) The
Reranker batches a request's documents by tokens in its own queue (:mod:`.reranker_host`);
the Retriever batches query vectors with ``@serve.batch``, its size and wait from the
config (set on the replica at start-up), ``max_ongoing_requests`` raised by the app builder
so that batches can fill. Failures are isolated per item (see :mod:`.batching`). Model calls
run in a worker thread so that the replica keeps collecting the next batch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from ray import serve

from uniembed import storage
from uniembed.priority import background_priority
from uniembed.runtime import local_device
from uniembed.serving.artifacts import ArtifactError, resolve_model_source
from uniembed.serving.config import DeploymentSection, ServeConfig

if TYPE_CHECKING:
    from uniembed.serving.retrieval import Hit, SearchIndex

# torch, transformers and FAISS are imported inside the replicas (see app.py: Serve
# imports this module in its build task before any replica starts).
Pair = tuple[str | None, Any]  # (text, PIL image or None)
logger = logging.getLogger(__name__)


def _load_scorer(source: str, device: str) -> Any:
    """The reranker's judge, imported and loaded at background priority (see
    uniembed.priority)."""
    with background_priority():
        from uniembed.reranker.scorer import JudgeScorer

        return JudgeScorer.load(source, device=device)


def load_model_fusion(model: str, source: str) -> dict[str, Any] | None:
    """The fusion stored with reranker ``model`` (see :func:`uniembed.reranker.fusion.
    fusion_path`) as a dict, checked; None, logged, when the model has none: /v1/rerank
    then returns the reranker's scores alone and says so."""
    from dataclasses import asdict

    from uniembed.reranker.fusion import FUSION_FILE, fusion_path, load_fusion

    path = fusion_path(model, source)
    if path is None:
        logger.warning(
            "reranker %s: no %s stored with the model; /v1/rerank returns the reranker's "
            "scores alone (not fused with the embedder's cosine)",
            model,
            FUSION_FILE,
        )
        return None
    fusion = load_fusion(path)
    logger.info("reranker %s: fused with %s, weight %.2f (%s)", model, fusion.embedder,
                fusion.weight, path)  # fmt: skip
    return asdict(fusion)


def _load_index(cfg: ServeConfig) -> tuple[SearchIndex, bool | None]:
    """The configured index, or the demo index and whether it came from the cache."""
    with background_priority():
        from uniembed.serving.demo_index import build_demo_index
        from uniembed.serving.retrieval import load_search_index

        if cfg.retriever.index:
            return load_search_index(cfg.retriever, None), None
        return build_demo_index(cfg.embedder, cfg.retriever)


def _configure_batching(method: Any, section: DeploymentSection) -> None:
    method.set_max_batch_size(section.max_batch_size)
    method.set_batch_wait_timeout_s(section.batch_wait_timeout_s)


@serve.deployment(name="Reranker")
class RerankerDeployment:
    """Holds one judge; scores each request's documents behind its query in steps of at
    most ``reranker.max_batch_tokens`` tokens, requests taking turns (see
    :mod:`.reranker_host`)."""

    def __init__(self, cfg: ServeConfig) -> None:
        from uniembed.serving.reranker_host import RerankerHost

        storage.configure(cfg.storage)
        section = cfg.reranker
        source = resolve_model_source(section.model, "reranker.model")
        self.host = RerankerHost(_load_scorer(source, local_device(section.device)), section)
        self.name = section.name
        self.fusion = load_model_fusion(section.model, source)

    def info(self) -> dict[str, Any]:
        """Name and modalities of the served reranker, and its fusion with the embedder's
        cosine (``fusion.json`` stored with the model; None without one)."""
        return {
            "name": self.name,
            "supports_images": self.host.scorer.supports_images,
            "fusion": self.fusion,
        }

    async def score(self, query: Pair, documents: list[Pair]) -> np.ndarray:
        """P(Yes) (len(documents),) of each document for the query; texts are cut to
        ``reranker.max_text_tokens`` tokens first."""
        return await self.host.score(query, documents)


@serve.deployment(name="Retriever")
class RetrieverDeployment:
    """Holds the FAISS index and documents; batches query vectors into one search.

    The replica is up at once; the index is loaded (``retriever.index``) or built from the
    demo corpus (cached after the first build, see :mod:`.demo_index`) in the background,
    and :meth:`info` says when it is ready, so that the other routes never wait for it.
    """

    async def __init__(self, cfg: ServeConfig) -> None:
        storage.configure(cfg.storage)
        self.section = cfg.retriever
        self.source = self.section.index or "demo"
        self.index: SearchIndex | None = None
        self.error: str | None = None
        self.cached: bool | None = None
        _configure_batching(self._search_batch, self.section.deployment)
        self._task = asyncio.get_running_loop().create_task(self._load(cfg))

    async def _load(self, cfg: ServeConfig) -> None:
        try:
            self.index, self.cached = await asyncio.to_thread(_load_index, cfg)
        except Exception as e:  # noqa: BLE001 - reported by info() and every search
            self.error = str(e)
            logger.exception("retriever: the index could not be loaded")

    def info(self) -> dict[str, Any]:
        """Readiness, size, width and origin of the index."""
        from uniembed.serving.retrieval import index_info

        if self.index is None:
            return {"ready": False, "count": None, "dim": None, "source": self.source,
                    "error": self.error}  # fmt: skip
        return {**index_info(self.index, self.source), "cached": self.cached}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def _search_batch(self, requests: list[tuple[np.ndarray, int]]) -> list[list[Hit]]:
        assert self.index is not None
        queries = np.stack([q for q, _ in requests]).astype(np.float32)
        return self.index.search_many(queries, [k for _, k in requests])

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """Top-``k`` hits for one query vector (dim,); IndexNotReadyError until the index
        is loaded, ArtifactError if it could not be, ValueError for a vector of another
        width than the index's."""
        from uniembed.serving.retrieval import IndexNotReadyError

        if self.index is None:
            if self.error is not None:
                raise ArtifactError(f"retriever.index: {self.error}")
            raise IndexNotReadyError("the index is still being built; try again shortly")
        if vector.shape[-1] != self.index.dim:
            raise ArtifactError(
                f"retriever.index: {self.source} holds {self.index.dim}-d vectors but the "
                f"embedder makes {vector.shape[-1]}-d ones (was the index built with another "
                "model?)"
            )
        return await self._search_batch((vector, k))
