"""Image loading and validation: bytes, local paths and storage URIs to RGB PIL images."""

from __future__ import annotations

import io
import os
import posixpath
import re
from collections.abc import Sequence

from PIL import Image, UnidentifiedImageError

# A decompression bomb guard: larger images are refused rather than decoded.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """An image could not be read or decoded; the message names the record and the source."""


def resolve_uri(path: str, base: str | None) -> str:
    """Resolve ``path`` against ``base`` (the folder of the file that named it).

    Absolute local paths and URIs with a scheme are returned unchanged.
    """
    if not path or "://" in path or os.path.isabs(path) or not base:
        return path
    if "://" in base:
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, path))}"
    return os.path.normpath(os.path.join(base, path))


def _under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def real_location(uri: str) -> str:
    """Where ``uri`` really points, for containment checks: a local path (or ``file://``
    URI) resolved through every link (``realpath``), a storage URI with ``..`` collapsed."""
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"
    return os.path.realpath(uri)


def link_note(uri: str) -> str:
    """`` (a link to /real/path)`` when the local ``uri`` goes through a link, else ``""``:
    for messages that refuse a path by where it really points."""
    real = real_location(uri)
    if "://" in real:
        return ""
    plain = os.path.abspath(uri[len("file://") :] if uri.startswith("file://") else uri)
    return "" if real == plain else f" (a link to {real})"


def path_allowed(uri: str, root: str | None, prefixes: Sequence[str] = ()) -> bool:
    """True when ``uri`` (already resolved by :func:`resolve_uri`) lies inside the folder
    ``root`` or under one of ``prefixes``; ``root=None`` allows everything.

    Both sides are compared where they really point (:func:`real_location`): ``..`` cannot
    climb out, and neither can a link inside the folder (``link.png -> ../x.png``,
    ``-> /etc/hostname``) or a folder link on the way. Local paths are resolved on this
    machine's filesystem; storage URIs are compared as written."""
    if root is None:
        return True
    if "\x00" in uri:  # no file system takes a NUL: nothing to resolve, never allowed
        return False
    target = real_location(uri)
    return any(_under(target, real_location(r)) for r in (root, *prefixes))


def under_prefixes(uri: str, prefixes: Sequence[str]) -> bool:
    """True when ``uri`` lies under one of ``prefixes`` where both really point (see
    :func:`path_allowed`): for inputs that name images by URI with no input folder of their
    own (serve requests)."""
    if "\x00" in uri:
        return False
    target = real_location(uri)
    return any(_under(target, real_location(p)) for p in prefixes)


def decode_image(
    data: bytes, *, record: str = "?", source: str = "bytes", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode and fully load encoded image bytes into an RGB image.

    Raises ImageError naming ``record`` and ``source`` for empty, truncated, unknown or
    oversized images. The whole image is decoded here, so a truncated file cannot fail
    later inside a model's processor.
    """
    if not data:
        raise ImageError(f"record {record}: image from {source} is empty")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageError(
                    f"record {record}: image from {source} is {width}x{height}, "
                    f"over the limit of {max_pixels} pixels"
                )
            probe.verify()  # checks structure without decoding pixels
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decodes every pixel: catches truncation
            return img.convert("RGB")
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # over PIL's own limit: refused, never decoded
        # One whole sentence with our limit, not PIL's message (its own, larger limit).
        size = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"has {size.group(1)} pixels, " if size else "is "
        raise ImageError(
            f"record {record}: image from {source} {pixels}over the limit of {max_pixels} "
            "pixels (a decompression bomb: refused, not decoded)"
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"record {record}: cannot decode image from {source}: {e}") from e


def load_image(
    image: bytes | None,
    image_uri: str | None,
    *,
    record: str = "?",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image | None:
    """The record's image from bytes (preferred) or a URI; None when it has neither."""
    if image:
        return decode_image(image, record=record, source="bytes", max_pixels=max_pixels)
    if image_uri:
        from uniembed import storage

        try:
            data = storage.read_bytes(image_uri)
        except Exception as e:  # noqa: BLE001 - every read failure becomes a record error
            raise ImageError(f"record {record}: cannot read image {image_uri}: {e}") from e
        return decode_image(data, record=record, source=image_uri, max_pixels=max_pixels)
    return None
