"""The FastAPI app: middleware, auth, limits and error shapes, over any :class:`Backend`;
the endpoints are the routers of :mod:`uniembed.serving.routes`.

Errors have one JSON shape, ``{"error": {"message", "type", "param", "code"}}``, whose
message names the offending field (``input[3].image``, ``top_k``, ...).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from uniembed.serving.auth import ApiKeyMiddleware
from uniembed.serving.backend import Backend
from uniembed.serving.body_limit import BodyLimitMiddleware
from uniembed.serving.config import ServeConfig
from uniembed.serving.inputs import RequestError
from uniembed.serving.routes import ROUTERS
from uniembed.serving.routes.context import ServeContext

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    503: "service_unavailable",
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


async def create_http_app(backend: Backend, cfg: ServeConfig, api_key: bytes | None) -> FastAPI:
    """The HTTP app over ``backend``: middleware, error shapes and one router per route
    group (:mod:`uniembed.serving.routes`). Only the embedder's info is asked for here: the
    app answers embeddings while the reranker and the index are still starting."""
    ctx = ServeContext(
        backend=backend, cfg=cfg, api_key=api_key, emb_info=await backend.embedder_info()
    )
    app = FastAPI(
        title=cfg.title,
        description="Multimodal embeddings, reranking and search (OpenAI / Cohere shapes).",
        version="1",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.limits.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, api_key=api_key)  # outermost: before any body read
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(RequestError, _on_request_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    for router in ROUTERS:
        app.include_router(router(ctx))
    return app
