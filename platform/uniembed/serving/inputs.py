"""Turning request fields into model inputs, before anything is batched.

Everything that can be wrong with one request (a bad image, an image too large, a URI that
is not allowed, an empty input) is found here, in the ingress, so that a bad request fails
alone with an error naming the field, and never reaches a batch shared with others.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from uniembed.data.images import ImageError, decode_image, under_prefixes
from uniembed.serving.config import LimitsSection

DATA_URI_PREFIX = "data:"
# What an error message must not show a client: object reprs and endpoints.
_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")
_ENDPOINT = re.compile(r"\s*\(endpoint [^)]*\)|https?://\S+")


def public_reason(exc: BaseException) -> str:
    """``str(exc)`` without object reprs (``<_io.BytesIO object at 0x..>``) or storage
    endpoints (``(endpoint http://10.0.0.5:7480)``), for messages sent to clients."""
    text = _ENDPOINT.sub("", _REPR.sub("", str(exc)))
    return text.strip() or type(exc).__name__


class RequestError(Exception):
    """A request the service refuses: HTTP ``status``, a message, the offending ``param``."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ImageRef:
    """An image as a client names it: inline bytes (a data URI) or a storage URI."""

    data: bytes | None = None
    uri: str | None = None


def parse_image_ref(value: str, field: str, limits: LimitsSection) -> ImageRef:
    """Parse ``data:image/...;base64,...`` or an allowed storage URI.

    Raises RequestError 400 for a malformed data URI or a URI outside
    ``limits.image_uri_prefixes``, 413 for inline bytes over ``limits.max_image_bytes``.
    """
    if value.startswith(DATA_URI_PREFIX):
        header, sep, payload = value.partition(",")
        if not sep or not header.endswith(";base64"):
            raise RequestError(
                400, f"{field}: a data URI must look like data:image/png;base64,<data>", field
            )
        # 4 base64 characters carry 3 bytes: refuse before decoding a huge payload.
        if len(payload) * 3 // 4 > limits.max_image_bytes + 3:
            raise RequestError(
                413, f"{field}: image is over the limit of {limits.max_image_bytes} bytes", field
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise RequestError(400, f"{field}: invalid base64 in data URI ({e})", field) from e
        return ImageRef(data=data)
    # Judged where the URI really points (``..`` collapsed, local links resolved): a string
    # prefix would let ``<prefix>/../x`` or a link inside an allowed folder read any file.
    # Where a link points is not said: the client is told nothing of the server's files.
    if not under_prefixes(value, limits.image_uri_prefixes):
        allowed = ", ".join(limits.image_uri_prefixes) or "none"
        raise RequestError(
            400,
            f"{field}: images must be data URIs (data:image/png;base64,...) or storage URIs "
            f"under an allowed prefix ({allowed})",
            field,
        )
    return ImageRef(uri=value)


def _check_pixels(data: bytes, field: str, limits: LimitsSection) -> None:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError as e:
        raise RequestError(
            413, f"{field}: image is over the limit of {limits.max_image_pixels} pixels", field
        ) from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise RequestError(400, f"{field}: cannot decode image ({public_reason(e)})", field) from e
    if width * height > limits.max_image_pixels:
        raise RequestError(
            413,
            f"{field}: image is {width}x{height}, over the limit of "
            f"{limits.max_image_pixels} pixels",
            field,
        )


def load_image_ref(ref: ImageRef, field: str, limits: LimitsSection) -> Image.Image:
    """Fetch (for URIs), size-check and fully decode an image to RGB.

    Blocking (storage reads, decoding): run it in a thread from async code. Raises
    RequestError 400 (unreadable or undecodable) or 413 (too many bytes or pixels).
    """
    data = ref.data
    if data is None:
        from uniembed import storage

        assert ref.uri is not None
        try:
            data = storage.read_bytes(ref.uri)
        except Exception as e:  # noqa: BLE001 - any read failure is this input's error
            reason = "not found" if "not found" in str(e) else public_reason(e)
            raise RequestError(400, f"{field}: cannot read image {ref.uri}: {reason}", field) from e
    if len(data) > limits.max_image_bytes:
        raise RequestError(
            413, f"{field}: image is over the limit of {limits.max_image_bytes} bytes", field
        )
    _check_pixels(data, field, limits)
    try:
        return decode_image(data, record=field, source=ref.uri or "data URI")
    except ImageError as e:
        raise RequestError(400, f"{field}: {public_reason(e)}", field) from e


def check_text(text: str | None, field: str, limits: LimitsSection) -> None:
    """RequestError 413 when ``text`` is longer than ``limits.max_text_chars``; 400 when it
    is not valid Unicode (a lone surrogate such as JSON's ``"\\ud800"``), which no
    tokenizer takes and which would otherwise fail inside a batch shared with others."""
    if text is None:
        return
    if len(text) > limits.max_text_chars:
        raise RequestError(
            413,
            f"{field}: text has {len(text)} characters, over the limit of {limits.max_text_chars}",
            field,
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RequestError(
            400,
            f"{field}: not valid Unicode: lone surrogate U+{ord(text[e.start]):04X} "
            f"at character {e.start}",
            field,
        ) from None


def check_count(n: int, limit: int, field: str) -> None:
    """RequestError 413 when a request holds more than ``limit`` items in ``field``."""
    if n > limit:
        raise RequestError(413, f"{field}: {n} items, over the limit of {limit}", field)
