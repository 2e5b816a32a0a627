"""``/v1/rerank`` (Cohere/Jina shape) and ``/rerank`` (Infinity's): reranking by a score
fused from the reranker's and the embedder's.

Both take the same request (``query``, ``documents``, ``top_n``, ``return_documents``,
``score``) and answer ``results`` of ``index`` and ``relevance_score``, best first, and
``score``, which says what ``relevance_score`` holds; they differ only in how a returned
text document looks (``{"text": ...}`` for Cohere and Jina clients, the string itself for
Infinity's).

``score`` (default ``fused``): ``fused`` is the reranker's P(Yes) and the served embedder's
query-document cosine combined with the weight stored with the reranker
(:mod:`uniembed.reranker.fusion`: fitted on held-out queries, so a reranker that does not
beat the embedder there gets weight 0 and the embedder's order); ``reranker`` is P(Yes)
alone; ``embedder`` the cosine alone (no reranker call). A reranker with no stored fusion,
or one fitted with another embedder, answers the default with ``score: reranker`` and a
``note`` saying why; asked for ``fused`` explicitly, it answers 400.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter

from uniembed.models import EmbedInput
from uniembed.reranker.fusion import FUSION_FILE, Fusion
from uniembed.serving.inputs import RequestError, check_count
from uniembed.serving.requests import to_pair
from uniembed.serving.routes.context import ServeContext, check_model
from uniembed.serving.schemas import (
    InfinityRerankResponse,
    InfinityRerankResult,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankScore,
)


@dataclass(frozen=True)
class Ranking:
    """A rerank's answer: the reranker's name, which score, the fused weight (fused only),
    why the score is not the fused default (or None), and (index, score) best first."""

    model: str
    score: RerankScore
    weight: float | None
    note: str | None
    best: list[tuple[int, float]]


def _refuse_images(query: Any, documents: list[Any], model: str) -> None:
    """400 naming the first image sent to a text-only reranker (before any decoding)."""
    named = [("query", query)] + [(f"documents[{i}]", d) for i, d in enumerate(documents)]
    for field, item in named:
        if not isinstance(item, str) and item.image:
            name = f"{field}.image"
            raise RequestError(400, f"{name}: reranker {model} reads text only", name)


def which_score(
    ctx: ServeContext, requested: RerankScore | None, info: dict[str, Any]
) -> tuple[RerankScore, Fusion | None, str | None]:
    """The score to answer with, the fusion it needs and a note when the default
    (fused) cannot be given; 400 when ``fused`` is asked for and cannot be given."""
    if requested in ("reranker", "embedder"):
        return requested, None, None
    raw, name = info.get("fusion"), info["name"]
    served = {ctx.emb_info["name"], ctx.cfg.embedder.model}
    if raw is None:
        why = (
            f"reranker {name} has no stored fusion ({FUSION_FILE}): relevance_score is its "
            "P(Yes) alone, not fused with the embedder's cosine, and may order documents "
            "worse than the embedder"
        )
    elif raw["embedder"] not in served:
        why = (
            f"the fusion of reranker {name} was fitted with embedder {raw['embedder']}, not "
            f"the served {ctx.emb_info['name']}: relevance_score is the reranker's P(Yes) alone"
        )
    else:
        return "fused", Fusion(**raw), None
    if requested == "fused":
        raise RequestError(400, f"score: fused is not available; {why}", "score")
    return "reranker", None, why


async def _cosines(ctx: ServeContext, query: Any, docs: list[Any]) -> np.ndarray:
    """The served embedder's cosine (len(docs),) of the query and each document; the query
    takes ``retriever.query_instruction`` as ``/v1/search`` does."""
    pairs = [("query", query)] + [(f"documents[{i}]", d) for i, d in enumerate(docs)]
    if not ctx.emb_info["supports_images"]:
        for field, (_, image) in pairs:
            if image is not None:
                raise RequestError(
                    400,
                    f"{field}.image: embedder {ctx.emb_info['name']} reads text only (send "
                    '"score": "reranker" for the reranker\'s score alone)',
                    f"{field}.image",
                )
    instruction = ctx.cfg.retriever.query_instruction
    q = await ctx.embed_one(
        EmbedInput(text=query[0], image=query[1], instruction=instruction), "query"
    )
    outs = await ctx.embed_many([EmbedInput(text=t, image=i) for t, i in docs], "documents")
    vectors = np.stack([o.vector for o in outs]).astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    qv = q.vector.astype(np.float64)
    return vectors @ (qv / max(float(np.linalg.norm(qv)), 1e-12))


async def ranked(ctx: ServeContext, req: RerankRequest) -> Ranking:
    """The ``top_n`` best documents by the requested (or default) score."""
    info = await ctx.reranker_info()
    name = info["name"]
    check_model(req.model, name)
    if req.raw_scores:
        raise RequestError(
            400,
            'raw_scores: not supported; send "score": "reranker" for the reranker\'s P(Yes)',
            "raw_scores",
        )
    check_count(len(req.documents), ctx.limits.max_documents, "documents")
    kind, fusion, note = which_score(ctx, req.score, info)
    if kind != "embedder" and not info["supports_images"]:
        _refuse_images(req.query, req.documents, name)
    query = await to_pair(req.query, "query", ctx.limits)
    docs = list(
        await asyncio.gather(
            *(to_pair(d, f"documents[{i}]", ctx.limits) for i, d in enumerate(req.documents))
        )
    )
    if kind == "reranker":
        scores = (await ctx.score(query, docs)).astype(np.float64)
    elif kind == "embedder":
        scores = await _cosines(ctx, query, docs)
    else:
        assert fusion is not None
        p_yes, cosines = await asyncio.gather(ctx.score(query, docs), _cosines(ctx, query, docs))
        scores = fusion.fuse(cosines, p_yes)
    order = np.argsort(-scores, kind="stable")[: req.top_n or len(docs)]
    weight = fusion.weight if fusion is not None else None
    return Ranking(name, kind, weight, note, [(i, float(scores[i])) for i in order.tolist()])


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
        """Cohere/Jina-style rerank, by default by the fused score (see the module)."""
        got = await ranked(ctx, req)
        results = []
        for i, score in got.best:
            doc = req.documents[i]
            echo = None
            if req.return_documents:
                echo = doc if not isinstance(doc, str) else {"text": doc}
            results.append(RerankResult(index=i, relevance_score=score, document=echo))
        return RerankResponse(
            model=got.model,
            score=got.score,
            fusion_weight=got.weight,
            note=got.note,
            results=results,
        )

    @api.post(
        "/rerank",
        response_model=InfinityRerankResponse,
        response_model_exclude_none=True,
        dependencies=ctx.auth,
        tags=["rerank"],
    )
    async def rerank_infinity(req: RerankRequest) -> InfinityRerankResponse:
        """Infinity-style rerank (the request of ``/v1/rerank``; documents echoed as sent)."""
        got = await ranked(ctx, req)
        results = [
            InfinityRerankResult(
                index=i,
                relevance_score=score,
                document=req.documents[i] if req.return_documents else None,
            )
            for i, score in got.best
        ]
        return InfinityRerankResponse(
            model=got.model,
            score=got.score,
            fusion_weight=got.weight,
            note=got.note,
            results=results,
        )

    return api
