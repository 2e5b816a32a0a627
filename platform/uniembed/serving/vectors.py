"""Output encodings of embedding vectors: Matryoshka truncation and OpenAI's base64 form."""

from __future__ import annotations

import base64

import numpy as np


def truncate(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Keep the first ``dimensions`` components of ``vectors`` (n, d) and L2-renormalise.

    Only meaningful for Matryoshka-trained models, whose prefixes are embeddings themselves.
    Returns (n, dimensions) float32.
    """
    if not 1 <= dimensions <= vectors.shape[1]:
        raise ValueError(f"dimensions: must be in [1, {vectors.shape[1]}], got {dimensions}")
    cut = np.asarray(vectors[:, :dimensions], dtype=np.float32)
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    # A prefix of all zeros has no direction; leave it at zero rather than divide by 0.
    return cut / np.where(norms > 0, norms, 1.0)


def to_base64(vector: np.ndarray) -> str:
    """OpenAI's ``encoding_format=base64``: little-endian float32 bytes, base64 encoded."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def from_base64(text: str) -> np.ndarray:
    """Inverse of :func:`to_base64`: a (d,) float32 vector."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)
