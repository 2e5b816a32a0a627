"""``/v1/rerank`` (Cohere/Jina shape) and ``/rerank`` (Infinity's): reranking by the
reranker's P(Yes).

Both take the same request (``query``, ``documents``, ``top_n``, ``return_documents``) and
answer ``results`` of ``index`` and ``relevance_score``, best first; they differ only in how
a returned text document looks (``{"text": ...}`` for Cohere and Jina clients, the string
itself for Infinity's).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter

from uniembed.serving.inputs import RequestError, check_count
from uniembed.serving.requests import to_pair
from uniembed.serving.routes.context import ServeContext, check_model
from uniembed.serving.schemas import (
    InfinityRerankResponse,
    InfinityRerankResult,
    RerankRequest,
    RerankResponse,
    RerankResult,
)


def _refuse_images(query: Any, documents: list[Any], model: str) -> None:
    """400 naming the first image sent to a text-only reranker (before any decoding)."""
    named = [("query", query)] + [(f"documents[{i}]", d) for i, d in enumerate(documents)]
    for field, item in named:
        if not isinstance(item, str) and item.image:
            name = f"{field}.image"
            raise RequestError(400, f"{name}: reranker {model} reads text only", name)


async def ranked(ctx: ServeContext, req: RerankRequest) -> tuple[str, list[tuple[int, float]]]:
    """The reranker's name and the (index, score) of the ``top_n`` best documents."""
    info = await ctx.reranker_info()
    name = info["name"]
    check_model(req.model, name)
    if req.raw_scores:
        raise RequestError(
            400, "raw_scores: not supported; relevance_score is P(Yes) in [0, 1]", "raw_scores"
        )
    check_count(len(req.documents), ctx.limits.max_documents, "documents")
    if not info["supports_images"]:
        _refuse_images(req.query, req.documents, name)
    query = await to_pair(req.query, "query", ctx.limits)
    docs = await asyncio.gather(
        *(to_pair(d, f"documents[{i}]", ctx.limits) for i, d in enumerate(req.documents))
    )
    scores = await ctx.score(query, list(docs))
    order = np.argsort(-scores, kind="stable")[: req.top_n or len(docs)]
    return name, [(i, float(scores[i])) for i in order.tolist()]


def router(ctx: ServeContext) -> APIRouter:
    """The rerank routes over ``ctx``."""
    api = APIRouter()

    @api.post(
        "/v1/rerank",
        response_model=RerankResponse,
        response_model_exclude_none=True,
        dependencies=ctx.auth,
        tags=["rerank"],
    )
    async def rerank(req: RerankRequest) -> RerankResponse:
        """Cohere/Jina-style rerank by the judge's P(Yes)."""
        name, best = await ranked(ctx, req)
        results = []
        for i, score in best:
            doc = req.documents[i]
            echo = None
            if req.return_documents:
                echo = doc if not isinstance(doc, str) else {"text": doc}
            results.append(RerankResult(index=i, relevance_score=score, document=echo))
        return RerankResponse(model=name, results=results)

    @api.post(
        "/rerank",
        response_model=InfinityRerankResponse,
        response_model_exclude_none=True,
        dependencies=ctx.auth,
        tags=["rerank"],
    )
    async def rerank_infinity(req: RerankRequest) -> InfinityRerankResponse:
        """Infinity-style rerank (the request of ``/v1/rerank``; documents echoed as sent)."""
        name, best = await ranked(ctx, req)
        results = [
            InfinityRerankResult(
                index=i,
                relevance_score=score,
                document=req.documents[i] if req.return_documents else None,
            )
            for i, score in best
        ]
        return InfinityRerankResponse(model=name, results=results)

    return api
