"""``/v1/search``: top-k documents of the served index, optionally reranked: by default by
the score ``/v1/rerank`` answers, the reranker's P(Yes) fused with the hit's cosine
(:mod:`uniembed.reranker.fusion`), or by the P(Yes) alone (``"score": "reranker"``, or a
reranker with no fusion for the served embedder: the response's ``note`` says so)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter

from uniembed.data.images import load_image
from uniembed.models import EmbedInput
from uniembed.reranker.fusion import Fusion
from uniembed.serving.inputs import RequestError, check_text
from uniembed.serving.requests import to_embed_input
from uniembed.serving.retrieval import Hit
from uniembed.serving.routes.context import ServeContext
from uniembed.serving.routes.rerank import which_score
from uniembed.serving.schemas import SearchDocument, SearchRequest, SearchResponse, SearchResult


async def _rerank_hits(
    ctx: ServeContext, inp: EmbedInput, hits: list[Hit], fusion: Fusion | None
) -> tuple[list[Hit], list[Any]]:
    """Hits reordered by the reranker's P(Yes), or fused with the hit's cosine (``fusion``);
    those it cannot read (an image document for a text-only reranker) keep their
    retrieval order after the scored ones."""
    images = bool((await ctx.reranker_info())["supports_images"])
    query = (inp.text, inp.image if images else None)
    if not query[0] and query[1] is None:
        raise RequestError(400, "query.image: the reranker reads text only", "query.image")
    pairs, scorable = [], []
    for i, h in enumerate(hits):
        image = None
        if images and h.image_uri:
            image = await asyncio.to_thread(load_image, None, h.image_uri, record=h.id)
        if h.text or image is not None:
            scorable.append(i)
            pairs.append((h.text, image))
    scores = await ctx.score(query, pairs) if pairs else np.zeros(0, np.float32)
    if fusion is not None and pairs:
        scores = fusion.fuse(np.array([hits[i].score for i in scorable]), scores)
    order = [scorable[j] for j in np.argsort(-scores, kind="stable")]
    by_index = {i: float(s) for i, s in zip(scorable, scores)}
    rest = [i for i in range(len(hits)) if i not in by_index]
    return [hits[i] for i in order + rest], [by_index.get(i) for i in order + rest]


def router(ctx: ServeContext) -> APIRouter:
    """The search route over ``ctx``."""
    api = APIRouter()
    cfg, emb_info, limits = ctx.cfg, ctx.emb_info, ctx.limits

    @api.post("/v1/search", response_model=SearchResponse, dependencies=ctx.auth, tags=["search"])
    async def search(req: SearchRequest) -> SearchResponse:
        """Top-k documents of the index for a text and/or image query."""
        ctx.need_retriever()
        max_k = cfg.retriever.max_top_k
        if req.top_k > max_k:
            raise RequestError(422, f"top_k: must be <= {max_k}, got {req.top_k}", "top_k")
        if isinstance(req.query, str):
            check_text(req.query, "query", limits)
        inp = await to_embed_input(
            req.query, "query", cfg.retriever.query_instruction, emb_info, limits
        )
        out = await ctx.embed_one(inp, "query")
        reranker = await ctx.need_reranker() if req.rerank else None
        n = req.top_k
        if req.rerank:
            n = min(max(req.top_k, req.rerank_candidates or cfg.retriever.rerank_candidates), max_k)
        hits = await ctx.search(out.vector, n)
        rerank_scores: list[float | None] = [None] * len(hits)
        kind, fusion, note = None, None, None
        if req.rerank:
            kind, fusion, note = which_score(ctx, req.score, await ctx.reranker_info())
        if req.rerank and hits:
            hits, rerank_scores = await _rerank_hits(ctx, inp, hits, fusion)
        results = [
            SearchResult(
                id=h.id,
                score=h.score,
                rerank_score=s,
                document=SearchDocument(text=h.text, image_uri=h.image_uri)
                if req.return_documents
                else None,
            )
            for h, s in list(zip(hits, rerank_scores))[: req.top_k]
        ]
        return SearchResponse(
            model=emb_info["name"],
            reranker=reranker,
            rerank_score=kind,  # type: ignore[arg-type] - fused or reranker when reranked
            fusion_weight=fusion.weight if fusion is not None else None,
            note=note,
            results=results,
        )

    return api
