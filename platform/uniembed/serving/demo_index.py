"""The demo index built when no index is configured, and its cache.

Embedding the demo corpus (3000 WordNet definitions) takes tens of seconds on a CPU: the
vectors are kept in the local cache (``$UNIEMBED_CACHE/serve-demo``), keyed by everything
they depend on (the model folder and its files' sizes and times, pooling, dtype, length
limit, the corpus file, the row limit), so that later start-ups only read them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from uniembed.models import EmbedInput
from uniembed.serving.config import EmbedderSection, RetrieverSection
from uniembed.serving.documents import Document, embed_inputs
from uniembed.serving.retrieval import SearchIndex, demo_documents, index_over

CHUNK = 32  # documents per forward pass, similar lengths together


def _stamp(path: str) -> list[object]:
    """Names, sizes and times of the files of a folder (or of one file); [] if not local."""
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return [p.name, st.st_size, st.st_mtime_ns]
    if not p.is_dir():
        return []
    out: list[object] = []
    for f in sorted(p.iterdir()):
        if f.is_file():
            st = f.stat()
            out += [f.name, st.st_size, st.st_mtime_ns]
    return out


def cache_key(model_source: str, emb: EmbedderSection, ret: RetrieverSection) -> str:
    """A digest of everything the demo vectors depend on."""
    from uniembed.data.demo import WORDNET_CORPUS, demo_path

    corpus = ret.documents or demo_path(WORDNET_CORPUS)
    parts = {
        "model": [model_source, _stamp(model_source)],
        "pooling": emb.pooling,
        "dtype": emb.dtype,
        "max_length": emb.max_length,
        "corpus": [corpus, _stamp(corpus)],
        "limit": ret.demo_limit,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(key: str) -> Path:
    """Where the vectors for ``key`` are kept."""
    from uniembed.models.cache import cache_dir

    return cache_dir() / "serve-demo" / f"{key}.npy"


def _save(path: Path, matrix: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".building.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, matrix)
        os.replace(tmp, path)  # atomic: a concurrent reader sees all of it or nothing
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def embed_sorted(model: object, inputs: list[EmbedInput]) -> np.ndarray:
    """(len(inputs), dim) embeddings, computed in chunks of similar text length."""
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i].text or ""))
    out: np.ndarray | None = None
    for start in range(0, len(order), CHUNK):
        chunk = order[start : start + CHUNK]
        vectors = model.embed([inputs[i] for i in chunk])  # type: ignore[attr-defined]
        if out is None:
            out = np.empty((len(inputs), vectors.shape[1]), dtype=np.float32)
        out[chunk] = vectors
    assert out is not None
    return out


def build_demo_index(emb: EmbedderSection, ret: RetrieverSection) -> tuple[SearchIndex, bool]:
    """The demo index and whether it came from the cache (blocking: run it in a thread).

    On a cache miss the embedder is loaded here, on this process's CPU, used once and
    dropped; its vectors are cached for the next start-up.
    """
    from uniembed.serving.artifacts import resolve_model_source
    from uniembed.serving.embedder_host import load_served_embedder

    docs: list[Document] = demo_documents(ret)
    path = cache_path(cache_key(resolve_model_source(emb.model, "embedder.model"), emb, ret))
    if path.is_file():
        matrix = np.load(path)
        if matrix.shape[0] == len(docs):
            return index_over(docs, matrix), True
    model = load_served_embedder(emb)
    matrix = embed_sorted(model, embed_inputs(docs))
    _save(path, matrix)
    return index_over(docs, matrix), False
