"""The optional API key: where it comes from and how a request's key is checked.

The key is read once at start-up, kept as bytes, compared in constant time and never
logged or echoed back in an error.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from uniembed.serving.config import AuthSection


class AuthConfigError(RuntimeError):
    """The configured secret file is missing, unreadable or empty."""


def load_api_key(section: AuthSection) -> bytes | None:
    """The key from ``api_key_file`` (if set), else from ``$api_key_env``; None: no auth.

    A configured file that cannot be read is an error (a typo must not switch auth off);
    an unset or empty variable means auth is off.
    """
    if section.api_key_file:
        path = Path(section.api_key_file).expanduser()
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise AuthConfigError(
                f"auth.api_key_file: cannot read {path}: {e.strerror or e}"
            ) from None
        if not key:
            raise AuthConfigError(f"auth.api_key_file: {path} is empty")
        return key.encode("utf-8")
    if section.api_key_env:
        key = os.environ.get(section.api_key_env, "").strip()
        return key.encode("utf-8") if key else None
    return None


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key:
        return x_api_key.strip()
    return None


def key_matches(expected: bytes, presented: str | None) -> bool:
    """Constant-time comparison of the presented key with the expected one."""
    if presented is None:
        return False
    return hmac.compare_digest(expected, presented.encode("utf-8"))


Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
UNAUTHORIZED = json.dumps(
    {
        "error": {
            "message": "missing or invalid API key",
            "type": "authentication_error",
            "param": "authorization",
            "code": 401,
        }
    }
).encode("utf-8")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


PROTECTED = ("/v1/", "/rerank")  # the API; /healthz and the docs stay open


class ApiKeyMiddleware:
    """Check the API key of every request under ``protected`` before anything reads the
    body: an unauthenticated client learns nothing from the parser's errors."""

    def __init__(
        self, app: ASGIApp, api_key: bytes | None, protected: tuple[str, ...] = PROTECTED
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            self.api_key is None
            or scope["type"] != "http"
            or not scope.get("path", "").startswith(self.protected)
            or key_matches(
                self.api_key,
                presented_key(_header(scope, b"authorization"), _header(scope, b"x-api-key")),
            )
        ):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(UNAUTHORIZED)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": UNAUTHORIZED})
