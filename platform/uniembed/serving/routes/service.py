"""``/healthz`` and ``/v1/models``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from uniembed.serving.routes.context import ServeContext
from uniembed.serving.schemas import ModelCard, ModelList


def router(ctx: ServeContext) -> APIRouter:
    """The service routes over ``ctx``."""
    api = APIRouter()
    emb_info = ctx.emb_info

    @api.get("/healthz", tags=["service"])
    async def healthz() -> Any:
        """Readiness per part and route: 200 when every served route answers, 503 (same
        body, ``status: starting``) while the reranker or the index is still starting;
        ``/v1/embeddings`` answers as soon as this replica is up."""
        status = await ctx.status()
        return JSONResponse(status, status_code=200 if status["status"] == "ok" else 503)

    @api.get("/v1/models", response_model=ModelList, dependencies=ctx.auth, tags=["models"])
    async def models() -> ModelList:
        """The served embedder and reranker."""
        cards = [
            ModelCard(
                id=emb_info["name"],
                type="embedding",
                dim=emb_info["dim"],
                supports_images=emb_info["supports_images"],
                matryoshka=emb_info["matryoshka"],
            )
        ]
        if ctx.backend.has_reranker:
            cards.append(ModelCard(id=await ctx.need_reranker(), type="reranker"))
        return ModelList(data=cards)

    return api
