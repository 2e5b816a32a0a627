"""One FAISS index per node: serialised once into a read-only buffer (e.g. a numpy array in
Ray's object store) and opened by each reader without copying its vectors.

FAISS (>= 1.10) reads an index through a ``ZeroCopyIOReader``: the flat index's vectors
and an IVF index's inverted lists then stay views into the buffer, so any number of actors
on a node that ``ray.get`` the same object share one copy of the pool. The opened index is
valid only while the buffer is alive: :class:`OpenIndex` keeps both together.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from uniembed.index.faiss_index import index_kind


def index_buffer(index: faiss.Index) -> np.ndarray:
    """``index`` serialised (FAISS's own format) into a read-only uint8 array."""
    buf = faiss.serialize_index(index)
    buf.setflags(write=False)
    return buf


@dataclass
class OpenIndex:
    """An index opened over ``buffer`` without a copy; keep this object, not only ``index``."""

    index: faiss.Index
    buffer: np.ndarray

    def reconstruct(self, positions: np.ndarray) -> np.ndarray:
        """The stored vectors at index ``positions`` (m, d) float32."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return np.zeros((0, self.index.d), dtype=np.float32)
        return self.index.reconstruct_batch(positions)


def open_index(buffer: np.ndarray) -> OpenIndex:
    """Open the index serialised in ``buffer`` (from :func:`index_buffer`), zero-copy.

    An IVF index gets its direct map (one int64 per row, in this process) so that rows can
    be reconstructed by position.
    """
    buf = np.asarray(buffer)
    if buf.dtype != np.uint8 or buf.ndim != 1 or buf.size == 0:
        raise ValueError(
            f"buffer: expected a non-empty 1-D uint8 array, got {buf.dtype} {buf.shape}"
        )
    if not buf.flags.c_contiguous:
        raise ValueError("buffer: must be C-contiguous")
    index = faiss.read_index(faiss.ZeroCopyIOReader(faiss.swig_ptr(buf), buf.size))
    if index_kind(index) == "ivf":
        faiss.extract_index_ivf(index).make_direct_map()
    return OpenIndex(index, buf)


def stored_vectors(index: faiss.Index) -> list[np.ndarray]:
    """Views (uint8) of the memory holding ``index``'s vectors: the flat index's codes, or
    each non-empty inverted list of an IVF index. For checks of who holds the pool."""
    concrete = faiss.downcast_index(index)
    if index_kind(index) == "flat":
        return [faiss.rev_swig_ptr(concrete.codes.data(), concrete.codes.size())]
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    out = []
    for i in range(lists.nlist):
        size = lists.list_size(i)
        if size:
            out.append(faiss.rev_swig_ptr(lists.get_codes(i), size * lists.code_size))
    return out


def is_zero_copy(opened: OpenIndex) -> bool:
    """True when every stored vector of ``opened.index`` lies inside ``opened.buffer``."""
    return all(np.shares_memory(v, opened.buffer) for v in stored_vectors(opened.index))
