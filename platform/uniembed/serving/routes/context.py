"""What every router needs: the backend, the config, the served models' info, the API-key
dependency and the error translations shared by several routes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import Depends, Header

from uniembed.models import EmbedInput
from uniembed.serving.auth import key_matches, presented_key
from uniembed.serving.backend import Backend, Pair
from uniembed.serving.batching import EmbedOutput, ItemFailure, raise_failure
from uniembed.serving.config import LimitsSection, ServeConfig
from uniembed.serving.inputs import RequestError
from uniembed.serving.retrieval import Hit, IndexNotReadyError

STATUS_WAIT_S = 1.0  # how long /healthz waits for a starting part before calling it starting


@dataclass
class ServeContext:
    """The app's shared state. The embedder's info is known at start-up; the reranker's
    and the retriever's are asked for when first needed, so that no route waits for a
    part it does not use."""

    backend: Backend
    cfg: ServeConfig
    api_key: bytes | None
    emb_info: dict[str, Any]
    auth: list[Any] = field(init=False)
    _rr_info: dict[str, Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        api_key = self.api_key

        async def require_key(
            authorization: str | None = Header(default=None),
            x_api_key: str | None = Header(default=None),
        ) -> None:
            if api_key is not None and not key_matches(
                api_key, presented_key(authorization, x_api_key)
            ):
                raise RequestError(401, "missing or invalid API key", "authorization")

        self.auth = [Depends(require_key)]

    @property
    def limits(self) -> LimitsSection:
        """The request limits of the config."""
        return self.cfg.limits

    async def embed_one(self, inp: EmbedInput, field: str) -> EmbedOutput:
        """The backend's embedding of ``inp``; a bad input is a 400 naming ``field``."""
        (result,) = await self.backend.embed_many([inp])
        return _output(result, field)

    async def embed_many(self, inputs: list[EmbedInput], field: str) -> list[EmbedOutput]:
        """The backend's embeddings of ``inputs`` (batched with other requests' inputs);
        the first bad input is a 400 naming ``field[i]``, a server-side failure a 500."""
        results = await self.backend.embed_many(inputs)
        return [_output(result, f"{field}[{i}]") for i, result in enumerate(results)]

    async def reranker_info(self) -> dict[str, Any]:
        """The served reranker's info (waits while it starts); 404 when none is served."""
        if not self.backend.has_reranker:
            raise RequestError(404, "no reranker is served (reranker.enabled: false)", "model")
        if self._rr_info is None:
            self._rr_info = await self.backend.reranker_info()
        assert self._rr_info is not None
        return self._rr_info

    async def need_reranker(self) -> str:
        """The served reranker's name; 404 when none is served."""
        return (await self.reranker_info())["name"]

    async def score(self, query: Pair, docs: list[Pair]) -> np.ndarray:
        """The reranker's scores (len(docs),); a bad document is a 400."""
        try:
            return await self.backend.score(query, docs)
        except ValueError as e:
            raise RequestError(400, f"documents: {e}", "documents") from e

    def need_retriever(self) -> None:
        """404 when no index is served."""
        if not self.backend.has_retriever:
            raise RequestError(404, "no index is served (retriever.enabled: false)", "query")

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The index's top-``k`` hits; 503 while the index is being built or if it failed."""
        try:
            return await self.backend.search(vector, k)
        except IndexNotReadyError as e:
            raise RequestError(503, f"retriever: {e}", None) from e
        except RuntimeError as e:  # ArtifactError, through the handle
            lines = [x for x in str(e).splitlines() if "retriever.index:" in x]
            if not lines:
                raise
            message = lines[-1][lines[-1].index("retriever.index:") :]
            raise RequestError(503, message, None) from e

    async def status(self) -> dict[str, Any]:
        """Readiness of each part and route, waiting at most ``STATUS_WAIT_S`` for each."""

        async def probe(get: Any) -> dict[str, Any] | None:
            try:
                info = await asyncio.wait_for(get(), STATUS_WAIT_S)
            except asyncio.TimeoutError:
                return {"ready": False}
            if info is None:
                return None
            return {"ready": True, **info}

        reranker, retriever = await asyncio.gather(
            probe(self.backend.reranker_info), probe(self.backend.retriever_info)
        )
        if retriever is not None and retriever.get("error"):
            retriever["ready"] = False
        routes = {"/v1/embeddings": True}
        if reranker is not None:
            routes["/v1/rerank"] = reranker["ready"]
        if retriever is not None:
            routes["/v1/search"] = retriever["ready"]
        return {
            "status": "ok" if all(routes.values()) else "starting",
            "routes": routes,
            "embedder": {"ready": True, **self.emb_info},
            "reranker": reranker,
            "retriever": retriever,
        }


def _output(result: EmbedOutput | ItemFailure, field: str) -> EmbedOutput:
    """``result``'s output; a client's bad input is a 400 naming ``field``, a failure of
    ours a RuntimeError (500)."""
    try:
        return raise_failure(result)
    except ValueError as e:
        raise RequestError(400, f"{field}: {e}", field) from e


def check_model(requested: str | None, served: str, field: str = "model") -> None:
    """404 when a request names a model that is not the served one."""
    if requested is not None and requested != served:
        raise RequestError(
            404, f"{field}: model {requested!r} is not served here ({served})", field
        )
