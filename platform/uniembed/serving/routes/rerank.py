"""``/v1/rerank``: Cohere/Jina-style reranking by the reranker's P(Yes)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter

from uniembed.serving.inputs import RequestError, check_count
from uniembed.serving.requests import to_pair
from uniembed.serving.routes.context import ServeContext, check_model
from uniembed.serving.schemas import RerankRequest, RerankResponse, RerankResult


def _refuse_images(query: Any, documents: list[Any], model: str) -> None:
    """400 naming the first image sent to a text-only reranker (before any decoding)."""
    named = [("query", query)] + [(f"documents[{i}]", d) for i, d in enumerate(documents)]
    for field, item in named:
        if not isinstance(item, str) and item.image:
            name = f"{field}.image"
            raise RequestError(400, f"{name}: reranker {model} reads text only", name)


def router(ctx: ServeContext) -> APIRouter:
    """The rerank route over ``ctx``."""
    api = APIRouter()
    limits = ctx.limits

    @api.post(
        "/v1/rerank",
        response_model=RerankResponse,
        response_model_exclude_none=True,
        dependencies=ctx.auth,
        tags=["rerank"],
    )
    async def rerank(req: RerankRequest) -> RerankResponse:
        """Cohere/Jina-style rerank by the judge's P(Yes)."""
        name = ctx.need_reranker()
        check_model(req.model, name)
        check_count(len(req.documents), limits.max_documents, "documents")
        assert ctx.rr_info is not None
        if not ctx.rr_info["supports_images"]:
            _refuse_images(req.query, req.documents, name)
        query = await to_pair(req.query, "query", limits)
        docs = await asyncio.gather(
            *(to_pair(d, f"documents[{i}]", limits) for i, d in enumerate(req.documents))
        )
        scores = await ctx.score(query, list(docs))
        order = np.argsort(-scores, kind="stable")[: req.top_n or len(docs)]
        results = []
        for i in order.tolist():
            doc = req.documents[i]
            echo = None
            if req.return_documents:
                echo = doc if not isinstance(doc, str) else {"text": doc}
            results.append(RerankResult(index=i, relevance_score=float(scores[i]), document=echo))
        return RerankResponse(model=name, results=results)

    return api
