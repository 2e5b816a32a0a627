"""The one interface every embedder family implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from uniembed.models.inputs import EmbedInput


@runtime_checkable
class Embedder(Protocol):
    """Maps inputs to L2-normalised vectors.

    Attributes:
        name: the registry name or folder the embedder was loaded from.
        dim: embedding width.
        supports_images: False for text-only families; they reject image inputs.
    """

    name: str
    dim: int
    supports_images: bool

    def embed(self, inputs: Sequence[EmbedInput]) -> np.ndarray:
        """Embed ``inputs`` in one forward pass.

        Returns a float32 array of shape (len(inputs), dim) whose rows have unit L2 norm.
        Raises ValueError naming the model for an input this embedder cannot take.
        """
        ...

    def token_length(self, inp: EmbedInput) -> int:
        """Number of tokens ``inp`` will occupy (image tokens included); cheap, for sorting."""
        ...
