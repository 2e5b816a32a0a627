"""FAISS inner-product indexes over L2-normalised embeddings: build, search, (de)serialise.

The index stores row positions only; :class:`~uniembed.index.ids.IdMap` turns them back into
string ids. On normalised vectors inner product equals cosine similarity, which is what the
embedders produce and what every mining threshold is expressed in.
"""

from __future__ import annotations

import math
from typing import Literal

import faiss
import numpy as np

IndexKind = Literal["flat", "ivf"]

# FAISS warns below 39 training points per centroid; k-means centroids trained on fewer are
# poor, so the default nlist never asks for more lists than that rule allows.
MIN_POINTS_PER_LIST = 39
# FAISS itself subsamples k-means training to 256 points per centroid; sampling ourselves
# (with our seed) keeps training deterministic and bounded in memory.
MAX_POINTS_PER_LIST = 256
NORM_TOLERANCE = 1e-3


def as_float32_matrix(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, d) array, or a ValueError naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (n, d) array, got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name}: dimension must be >= 1, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name}: expected dimension {dim}, got {arr.shape[1]}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        raise ValueError(f"{name}: row {int(np.argmin(finite))} holds NaN or inf")
    return arr


def check_normalized(x: np.ndarray, name: str, tol: float = NORM_TOLERANCE) -> None:
    """Raise ValueError naming the first row of ``x`` (n, d) whose L2 norm is not 1 ± ``tol``."""
    norms = np.linalg.norm(x, axis=1)
    bad = np.abs(norms - 1.0) > tol
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"{name}: row {row} has L2 norm {norms[row]:.6f}; inner-product search needs "
            "L2-normalised vectors (normalise them, or pass check_norm=False)"
        )


def default_nlist(n: int) -> int:
    """About 4*sqrt(n) lists, capped so each list gets >= 39 training points, at least 1."""
    return max(1, min(int(4 * math.sqrt(n)), n // MIN_POINTS_PER_LIST))


def build_index(
    embeddings: np.ndarray,
    kind: IndexKind = "flat",
    nlist: int | None = None,
    nprobe: int = 16,
    *,
    seed: int = 0,
    check_norm: bool = True,
    train_per_list: int = MAX_POINTS_PER_LIST,
) -> faiss.Index:
    """Build an inner-product index over ``embeddings`` (n, d) float32, rows L2-normalised.

    ``kind="flat"`` is exact search. ``kind="ivf"`` is an IVF-Flat index with ``nlist`` lists
    (default :func:`default_nlist`) trained by k-means on the data, or on a seeded sample of
    ``train_per_list`` (256) points per list when the data is larger than that; ``nprobe``
    lists are visited per query (capped at ``nlist``; ``nprobe == nlist`` is exact). Row
    ``i`` of ``embeddings`` is index position ``i``.
    """
    x = as_float32_matrix(embeddings, "embeddings")
    n, d = x.shape
    if n == 0:
        raise ValueError("embeddings: cannot build an index over 0 rows")
    if check_norm:
        check_normalized(x, "embeddings")
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(x)
        return index
    if kind != "ivf":
        raise ValueError(f"kind: {kind!r} is not one of ['flat', 'ivf']")
    if nlist is None:
        nlist = default_nlist(n)
    if nlist < 1:
        raise ValueError(f"nlist: must be >= 1, got {nlist}")
    if n < nlist:
        raise ValueError(
            f"nlist: an IVF index with nlist={nlist} needs at least {nlist} training rows, "
            f"got n={n} (lower nlist or use kind='flat')"
        )
    if nprobe < 1:
        raise ValueError(f"nprobe: must be >= 1, got {nprobe}")
    if train_per_list < 1:
        raise ValueError(f"train_per_list: must be >= 1, got {train_per_list}")
    quantizer = faiss.IndexFlatIP(d)
    # FAISS's Python constructor keeps a reference to the quantizer for the index's lifetime.
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    max_train = train_per_list * nlist
    if n > max_train:
        rng = np.random.default_rng(seed)
        train = x[np.sort(rng.choice(n, size=max_train, replace=False))]
    else:
        train = x
    index.cp.seed = seed
    index.train(train)
    index.add(x)
    index.nprobe = min(nprobe, nlist)
    return index


def search(
    index: faiss.Index, queries: np.ndarray, k: int, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner-product search of ``queries`` (q, d) in chunks of ``batch_size``.

    Returns ``scores`` (q, k) float32, descending per row, and ``indices`` (q, k) int64 index
    positions. Slots with no result (k > ntotal, or an IVF probe that found too few) hold
    index -1 and score -inf.
    """
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    q = as_float32_matrix(queries, "queries", dim=index.d)
    scores = np.empty((q.shape[0], k), dtype=np.float32)
    indices = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], batch_size):
        stop = start + batch_size
        scores[start:stop], indices[start:stop] = index.search(q[start:stop], k)
    scores[indices < 0] = -np.inf
    return scores, indices


def index_to_bytes(index: faiss.Index) -> bytes:
    """Serialise ``index`` (FAISS's own format, IVF ``nprobe`` included)."""
    return faiss.serialize_index(index).tobytes()


def index_from_bytes(data: bytes) -> faiss.Index:
    """Inverse of :func:`index_to_bytes`; returns the concrete index class."""
    if not data:
        raise ValueError("data: empty bytes are not a FAISS index")
    # deserialize_index already returns the concrete class and owns the C++ object; wrapping
    # it again in downcast_index would leave a non-owning wrapper to a freed index.
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def index_kind(index: faiss.Index) -> IndexKind:
    """``"flat"`` or ``"ivf"`` for the index classes :func:`build_index` creates."""
    # downcast_index returns a non-owning view; ``index`` keeps the object alive meanwhile.
    concrete = faiss.downcast_index(index)
    if isinstance(concrete, faiss.IndexIVF):
        return "ivf"
    if isinstance(concrete, faiss.IndexFlat):
        return "flat"
    raise ValueError(f"index: unsupported FAISS index type {type(concrete).__name__}")


def metric_name(index: faiss.Index) -> str:
    """``"inner_product"`` or ``"l2"``: the index's metric, for the JSON sidecar."""
    if index.metric_type == faiss.METRIC_INNER_PRODUCT:
        return "inner_product"
    if index.metric_type == faiss.METRIC_L2:
        return "l2"
    return f"faiss_metric_{index.metric_type}"
