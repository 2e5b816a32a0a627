"""What every router needs: the backend, the config, the served models' info, the API-key
dependency and the error translations shared by several routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import Depends, Header

from uniembed.models import EmbedInput
from uniembed.serving.auth import key_matches, presented_key
from uniembed.serving.backend import Backend, Pair
from uniembed.serving.config import LimitsSection, ServeConfig
from uniembed.serving.inputs import RequestError


@dataclass
class ServeContext:
    """The app's shared state, built once at start-up (the backend is asked once for its
    models' info)."""

    backend: Backend
    cfg: ServeConfig
    api_key: bytes | None
    emb_info: dict[str, Any]
    rr_info: dict[str, Any] | None
    ret_info: dict[str, Any] | None
    auth: list[Any] = field(init=False)

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

    async def embed_one(self, inp: EmbedInput, field: str) -> Any:
        """The backend's embedding of ``inp``; a bad input is a 400 naming ``field``."""
        try:
            return await self.backend.embed(inp)
        except ValueError as e:
            raise RequestError(400, f"{field}: {e}", field) from e

    def need_reranker(self) -> str:
        """The served reranker's name; 404 when none is served."""
        if self.rr_info is None:
            raise RequestError(404, "no reranker is served (reranker.enabled: false)", "model")
        return self.rr_info["name"]

    async def score(self, query: Pair, docs: list[Pair]) -> np.ndarray:
        """The reranker's scores (len(docs),); a bad document is a 400."""
        try:
            return await self.backend.score(query, docs)
        except ValueError as e:
            raise RequestError(400, f"documents: {e}", "documents") from e


def check_model(requested: str | None, served: str, field: str = "model") -> None:
    """404 when a request names a model that is not the served one."""
    if requested is not None and requested != served:
        raise RequestError(
            404, f"{field}: model {requested!r} is not served here ({served})", field
        )
