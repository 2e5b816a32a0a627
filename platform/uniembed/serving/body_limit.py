"""An ASGI middleware that refuses request bodies over a size limit with 413.

A declared ``Content-Length`` over the limit is refused before any byte is read; a body
without one (chunked) is read here, up to the limit, and refused with 413 as soon as it
passes it; a body within the limit is handed to the app as read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLargeError(Exception):
    """Raised inside the app when a streamed body passes the limit (handled as 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over the limit of {limit} bytes")
        self.limit = limit


def too_large_body(limit: int) -> bytes:
    """The JSON error body of a 413 for a body over ``limit`` bytes."""
    error = {
        "message": f"request body is over the limit of {limit} bytes",
        "type": "request_too_large",
        "param": "body",
        "code": 413,
    }
    return json.dumps({"error": error}).encode("utf-8")


class BodyLimitMiddleware:
    """Wrap ``app`` so that HTTP request bodies larger than ``max_bytes`` get a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: let the app see it
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                await _send_413(send, self.max_bytes)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = too_large_body(limit)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
