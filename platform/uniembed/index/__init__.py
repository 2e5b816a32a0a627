"""The FAISS vector index: row ids, building and searching, saving and loading through
:mod:`uniembed.storage`. Used by the embed job (writes one), mining and serving (search)."""

from __future__ import annotations

from uniembed.index.faiss_index import (
    build_index,
    default_nlist,
    index_from_bytes,
    index_kind,
    index_to_bytes,
    search,
)
from uniembed.index.ids import IdMap
from uniembed.index.store import load_index, read_metadata, save_index

__all__ = [
    "IdMap",
    "build_index",
    "default_nlist",
    "index_from_bytes",
    "index_kind",
    "index_to_bytes",
    "load_index",
    "read_metadata",
    "save_index",
    "search",
]
