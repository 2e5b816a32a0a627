"""The optional API key: where it comes from and how a request's key is checked.

The key is read once at start-up, kept as bytes, compared in constant time and never
logged or echoed back in an error.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

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
