"""Request items -> decoded model inputs (images fetched and decoded in a thread)."""

from __future__ import annotations

import asyncio
from typing import Any

from uniembed.models import EmbedInput
from uniembed.serving.config import LimitsSection
from uniembed.serving.inputs import RequestError, check_text, load_image_ref, parse_image_ref
from uniembed.serving.schemas import ContentItem


async def _image(value: str | None, field: str, limits: LimitsSection) -> Any:
    if not value:
        return None
    ref = parse_image_ref(value, field, limits)
    return await asyncio.to_thread(load_image_ref, ref, field, limits)


async def to_embed_input(
    item: str | ContentItem,
    field: str,
    instruction: str | None,
    info: dict[str, Any],
    limits: LimitsSection,
) -> EmbedInput:
    """An :class:`EmbedInput` for one request item, every check done.

    ``field`` names the item in errors (``input[3]``); ``instruction`` is the request's
    default; ``info`` is the embedder's info (``supports_images``, ``name``).
    """
    if isinstance(item, str):
        if not item:
            raise RequestError(422, f"{field}: must not be an empty string", field)
        check_text(item, field, limits)
        return EmbedInput(text=item, instruction=instruction)
    check_text(item.text, f"{field}.text", limits)
    check_text(item.instruction, f"{field}.instruction", limits)
    if item.image and not info["supports_images"]:
        raise RequestError(
            400,
            f"{field}.image: model {info['name']} embeds text only",
            f"{field}.image",
        )
    image = await _image(item.image, f"{field}.image", limits)
    return EmbedInput(
        text=item.text or None, image=image, instruction=item.instruction or instruction
    )


async def to_pair(item: str | ContentItem, field: str, limits: LimitsSection) -> tuple[Any, Any]:
    """``(text, image)`` of a rerank query or document, image decoded."""
    if isinstance(item, str):
        if not item:
            raise RequestError(422, f"{field}: must not be an empty string", field)
        check_text(item, field, limits)
        return item, None
    check_text(item.text, f"{field}.text", limits)
    return item.text or None, await _image(item.image, f"{field}.image", limits)
