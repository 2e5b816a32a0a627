"""The FastAPI app: endpoints, auth, limits and error shapes, over any :class:`Backend`.

Errors have one JSON shape, ``{"error": {"message", "type", "param", "code"}}``, whose
message names the offending field (``input[3].image``, ``top_k``, ...).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from uniembed.data.images import load_image
from uniembed.models import EmbedInput
from uniembed.serving.auth import ApiKeyMiddleware, key_matches, presented_key
from uniembed.serving.backend import Backend, Pair
from uniembed.serving.body_limit import BodyLimitMiddleware
from uniembed.serving.config import ServeConfig
from uniembed.serving.inputs import RequestError, check_count, check_text
from uniembed.serving.requests import to_embed_input, to_pair
from uniembed.serving.retrieval import Hit
from uniembed.serving.schemas import (
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
    RerankRequest,
    RerankResponse,
    RerankResult,
    SearchDocument,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Usage,
)
from uniembed.serving.vectors import to_base64, truncate

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
}


def error_response(status: int, message: str, param: str | None) -> JSONResponse:
    """The JSON error every failure path returns."""
    body = {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": param,
            "code": status,
        }
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "input", 2, "ContentItem", "image")`` -> ``"input[2].image"``.

    The location's first part (body/query/header) and pydantic's union branch tags (type
    names such as ``str`` or ``ContentItem``) are dropped; our field names are lowercase.
    """
    out = ""
    for part in list(loc)[1:]:
        if isinstance(part, str) and part.startswith(("list[", "function-")):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "int", "float", "bool") or "[" in part or part[:1].isupper():
            continue
        else:
            out += f".{part}" if out else part
    return out or "body"


# Errors that only say "this union branch has another type": the least informative.
_TYPE_ERRORS = {"string_type", "list_type", "int_type", "model_type", "dict_type", "int_parsing"}


def _most_informative(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A union field reports one error per branch; the deepest one that is not a mere type
    mismatch is the informative one (``input[0]: needs text or image`` for ``{}``, rather
    than ``input[0]: Input should be a valid string``)."""
    return max(errors, key=lambda e: (len(field_name(e["loc"])), e.get("type") not in _TYPE_ERRORS))


async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors() or [{"loc": ("body",), "msg": "invalid request"}]
    first = _most_informative(list(errors))
    name = field_name(first["loc"])
    payload = {
        "error": {
            "message": f"{name}: {first['msg']}",
            "type": "invalid_request_error",
            "param": name,
            "code": 422,
        },
        "detail": jsonable_encoder(errors, custom_encoder={Exception: str}),
    }
    return JSONResponse(payload, status_code=422)


async def _on_request_error(_: Request, exc: RequestError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.param)


async def _on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    # FastAPI's own refusals (a body that is not UTF-8 JSON, an unknown route) in our shape.
    param = "body" if exc.status_code == 400 else None
    detail = exc.detail if isinstance(exc.detail, str) else "invalid request"
    return error_response(exc.status_code, f"{param or 'request'}: {detail}", param)


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    # Never a traceback, an object repr or an internal address in the body.
    return error_response(500, f"internal error ({type(exc).__name__})", None)


def _token_ids(items: list[Any]) -> bool:
    return any(isinstance(x, (int, list)) for x in items)


def _refuse_images(query: Any, documents: list[Any], model: str) -> None:
    """400 naming the first image sent to a text-only reranker (before any decoding)."""
    named = [("query", query)] + [(f"documents[{i}]", d) for i, d in enumerate(documents)]
    for field, item in named:
        if not isinstance(item, str) and item.image:
            name = f"{field}.image"
            raise RequestError(400, f"{name}: reranker {model} reads text only", name)


def _check_model(requested: str | None, served: str, field: str = "model") -> None:
    if requested is not None and requested != served:
        raise RequestError(
            404, f"{field}: model {requested!r} is not served here ({served})", field
        )


async def create_http_app(backend: Backend, cfg: ServeConfig, api_key: bytes | None) -> FastAPI:
    """The HTTP app over ``backend``; asks the backend once for its models' info."""
    emb_info = await backend.embedder_info()
    rr_info = await backend.reranker_info()
    ret_info = await backend.retriever_info()
    limits = cfg.limits
    app = FastAPI(
        title=cfg.title,
        description="Multimodal embeddings, reranking and search (OpenAI / Cohere shapes).",
        version="1",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, api_key=api_key)  # outermost: before any body read
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(RequestError, _on_request_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)

    async def require_key(
        authorization: str | None = Header(default=None),
        x_api_key: str | None = Header(default=None),
    ) -> None:
        if api_key is not None and not key_matches(
            api_key, presented_key(authorization, x_api_key)
        ):
            raise RequestError(401, "missing or invalid API key", "authorization")

    auth = [Depends(require_key)]

    async def embed_one(inp: EmbedInput, field: str) -> Any:
        try:
            return await backend.embed(inp)
        except ValueError as e:
            raise RequestError(400, f"{field}: {e}", field) from e

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness: every deployment answers."""
        return {
            "status": "ok",
            "embedder": await backend.embedder_info(),
            "reranker": await backend.reranker_info(),
            "retriever": await backend.retriever_info(),
        }

    @app.get("/v1/models", response_model=ModelList, dependencies=auth, tags=["models"])
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

    @app.post("/v1/embeddings", response_model=EmbeddingResponse, dependencies=auth, tags=["embed"])
    async def embeddings(req: EmbeddingRequest) -> EmbeddingResponse:
        """OpenAI-compatible embeddings; items may carry images and an instruction."""
        _check_model(req.model, emb_info["name"])
        items = [req.input] if isinstance(req.input, str) else req.input
        if not items:
            raise RequestError(422, "input: must not be empty", "input")
        if _token_ids(items):
            raise RequestError(
                400,
                "input: token-id inputs (lists of integers) are not supported by this "
                "server; send the text",
                "input",
            )
        check_count(len(items), limits.max_inputs, "input")
        check_text(req.instruction, "instruction", limits)
        if req.dimensions is not None:
            if not emb_info["matryoshka"]:
                raise RequestError(
                    400,
                    f"dimensions: model {emb_info['name']} was not trained for truncated "
                    "(Matryoshka) embeddings; omit dimensions",
                    "dimensions",
                )
            if req.dimensions > emb_info["dim"]:
                raise RequestError(
                    422, f"dimensions: must be <= {emb_info['dim']}, got {req.dimensions}",
                    "dimensions",
                )  # fmt: skip
        # Validate and decode every input before any of them reaches a batch.
        inputs = await asyncio.gather(
            *(
                to_embed_input(item, f"input[{i}]", req.instruction, emb_info, limits)
                for i, item in enumerate(items)
            )
        )
        outputs = await asyncio.gather(
            *(embed_one(inp, f"input[{i}]") for i, inp in enumerate(inputs))
        )
        matrix = np.stack([o.vector for o in outputs])
        if req.dimensions is not None:
            matrix = truncate(matrix, req.dimensions)
        data = [
            EmbeddingData(
                index=i,
                embedding=to_base64(row) if req.encoding_format == "base64" else row.tolist(),
            )
            for i, row in enumerate(matrix)
        ]
        tokens = sum(o.tokens for o in outputs)
        return EmbeddingResponse(
            data=data,
            model=emb_info["name"],
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    def _need_reranker() -> str:
        if rr_info is None:
            raise RequestError(404, "no reranker is served (reranker.enabled: false)", "model")
        return rr_info["name"]

    async def _score(query: Pair, docs: list[Pair]) -> np.ndarray:
        try:
            return await backend.score(query, docs)
        except ValueError as e:
            raise RequestError(400, f"documents: {e}", "documents") from e

    @app.post(
        "/v1/rerank",
        response_model=RerankResponse,
        response_model_exclude_none=True,
        dependencies=auth,
        tags=["rerank"],
    )
    async def rerank(req: RerankRequest) -> RerankResponse:
        """Cohere/Jina-style rerank by the judge's P(Yes)."""
        name = _need_reranker()
        _check_model(req.model, name)
        check_count(len(req.documents), limits.max_documents, "documents")
        if not rr_info["supports_images"]:
            _refuse_images(req.query, req.documents, name)
        query = await to_pair(req.query, "query", limits)
        docs = await asyncio.gather(
            *(to_pair(d, f"documents[{i}]", limits) for i, d in enumerate(req.documents))
        )
        scores = await _score(query, list(docs))
        order = np.argsort(-scores, kind="stable")[: req.top_n or len(docs)]
        results = []
        for i in order.tolist():
            doc = req.documents[i]
            echo = None
            if req.return_documents:
                echo = doc if not isinstance(doc, str) else {"text": doc}
            results.append(RerankResult(index=i, relevance_score=float(scores[i]), document=echo))
        return RerankResponse(model=name, results=results)

    async def _rerank_hits(inp: EmbedInput, hits: list[Hit]) -> tuple[list[Hit], list[Any]]:
        """Hits reordered by the reranker; those it cannot read (an image document for a
        text-only reranker) keep their retrieval order after the scored ones."""
        images = bool(rr_info and rr_info["supports_images"])
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
        scores = await _score(query, pairs) if pairs else np.zeros(0, np.float32)
        order = [scorable[j] for j in np.argsort(-scores, kind="stable")]
        by_index = {i: float(s) for i, s in zip(scorable, scores)}
        rest = [i for i in range(len(hits)) if i not in by_index]
        return [hits[i] for i in order + rest], [by_index.get(i) for i in order + rest]

    @app.post("/v1/search", response_model=SearchResponse, dependencies=auth, tags=["search"])
    async def search(req: SearchRequest) -> SearchResponse:
        """Top-k documents of the index for a text and/or image query."""
        if ret_info is None:
            raise RequestError(404, "no index is served (retriever.enabled: false)", "query")
        max_k = cfg.retriever.max_top_k
        if req.top_k > max_k:
            raise RequestError(422, f"top_k: must be <= {max_k}, got {req.top_k}", "top_k")
        if isinstance(req.query, str):
            check_text(req.query, "query", limits)
        inp = await to_embed_input(
            req.query, "query", cfg.retriever.query_instruction, emb_info, limits
        )
        out = await embed_one(inp, "query")
        reranker = _need_reranker() if req.rerank else None
        n = req.top_k
        if req.rerank:
            n = min(max(req.top_k, req.rerank_candidates or cfg.retriever.rerank_candidates), max_k)
        hits = await backend.search(out.vector, n)
        rerank_scores: list[float | None] = [None] * len(hits)
        if req.rerank and hits:
            hits, rerank_scores = await _rerank_hits(inp, hits)
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
        return SearchResponse(model=emb_info["name"], reranker=reranker, results=results)

    return app
