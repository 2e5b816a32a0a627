"""What an embedder consumes: one text, one image, or both, with an optional instruction."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class EmbedInput:
    """One item to embed.

    ``text`` and ``image`` may both be set (an interleaved input: one sequence holding both).
    ``image`` is an already decoded RGB ``PIL.Image.Image``. ``instruction`` is a task
    instruction placed in front of the content, as in MMEB queries
    ("Represent the given image with the following question: ...").
    """

    text: str | None = None
    image: Image.Image | None = None
    instruction: str | None = None

    @property
    def has_text(self) -> bool:
        """True when the input carries non-empty text."""
        return bool(self.text)

    @property
    def has_image(self) -> bool:
        """True when the input carries an image."""
        return self.image is not None


def check_input(inp: EmbedInput, index: int, model: str) -> None:
    """Raise ValueError naming input ``index`` and ``model`` if ``inp`` cannot be embedded."""
    if not isinstance(inp, EmbedInput):
        raise ValueError(f"{model}: input {index} is a {type(inp).__name__}, not an EmbedInput")
    if not inp.has_text and not inp.has_image:
        raise ValueError(f"{model}: input {index} has neither text nor image")
    if inp.text is not None and not isinstance(inp.text, str):
        raise ValueError(f"{model}: input {index} field text is a {type(inp.text).__name__}")
    if inp.image is not None and not isinstance(inp.image, Image.Image):
        raise ValueError(
            f"{model}: input {index} field image is a {type(inp.image).__name__}, "
            "not a decoded PIL image"
        )
