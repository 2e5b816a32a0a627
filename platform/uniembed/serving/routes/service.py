"""``/healthz`` and ``/v1/models``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from uniembed.serving.routes.context import ServeContext
from uniembed.serving.schemas import ModelCard, ModelList


def router(ctx: ServeContext) -> APIRouter:
    """The service routes over ``ctx``."""
    api = APIRouter()
    backend, emb_info, rr_info = ctx.backend, ctx.emb_info, ctx.rr_info

    @api.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness: every deployment answers."""
        return {
            "status": "ok",
            "embedder": await backend.embedder_info(),
            "reranker": await backend.reranker_info(),
            "retriever": await backend.retriever_info(),
        }

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
        if rr_info is not None:
            cards.append(ModelCard(id=rr_info["name"], type="reranker"))
        return ModelList(data=cards)

    return api
