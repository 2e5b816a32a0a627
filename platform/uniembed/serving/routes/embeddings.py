"""``/v1/embeddings``: OpenAI-compatible embeddings, items may carry images."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from uniembed.serving.inputs import RequestError, check_count, check_text
from uniembed.serving.requests import to_embed_input
from uniembed.serving.routes.context import ServeContext, check_model
from uniembed.serving.schemas import EmbeddingRequest, EmbeddingResponse
from uniembed.serving.vectors import to_base64, truncate

JSON = "application/json"


def _token_ids(items: list[Any]) -> bool:
    return any(isinstance(x, (int, list)) for x in items)


def embeddings_response(matrix: np.ndarray, encoding: str, model: str, tokens: int) -> Response:
    """The :class:`EmbeddingResponse` of ``matrix`` (n, dim) as JSON bytes.

    Built straight from the float32 rows (orjson writes each float32 in its shortest exact
    form) rather than through per-float Python objects and model validation, which would
    cost more than the forward pass for a small model.
    """
    if encoding == "base64":
        rows: list[Any] = [to_base64(row) for row in matrix]
    else:
        rows = list(np.ascontiguousarray(matrix, dtype=np.float32))
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(rows)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)


def router(ctx: ServeContext) -> APIRouter:
    """The embeddings route over ``ctx``."""
    api = APIRouter()
    emb_info, limits = ctx.emb_info, ctx.limits

    @api.post(
        "/v1/embeddings", response_model=EmbeddingResponse, dependencies=ctx.auth, tags=["embed"]
    )
    async def embeddings(req: EmbeddingRequest) -> Response:
        """OpenAI-compatible embeddings; items may carry images and an instruction."""
        check_model(req.model, emb_info["name"])
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
        outputs = await ctx.embed_many(list(inputs), "input")
        matrix = np.stack([o.vector for o in outputs])
        if req.dimensions is not None:
            matrix = truncate(matrix, req.dimensions)
        tokens = sum(o.tokens for o in outputs)
        return embeddings_response(matrix, req.encoding_format, emb_info["name"], tokens)

    return api
