"""Save and load a FAISS index with its id list through :mod:`uniembed.storage`.

Three objects are written for an index at ``uri`` (local path or ``s3://``):

- ``uri``: the FAISS index bytes;
- ``<uri>.ids.json``: the :class:`IdMap` (JSON array, position order);
- ``<uri>.json``: a sidecar ``{"format", "kind", "dim", "count", "metric", "ids", "nlist",
  "nprobe"}``, where ``ids`` is the id list's name relative to the index's folder (so the
  three files can be moved together).

The sidecar is written last: a reader that finds it finds a complete index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import faiss

from uniembed.index.faiss_index import index_from_bytes, index_kind, index_to_bytes, metric_name
from uniembed.index.ids import IdMap

SIDECAR_SUFFIX = ".json"
IDS_SUFFIX = ".ids.json"
FORMAT = "uniembed.faiss/1"


def sidecar_uri(uri: str) -> str:
    """Where the JSON sidecar of the index at ``uri`` lives."""
    return uri + SIDECAR_SUFFIX


def _basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _sibling(uri: str, name: str) -> str:
    if "://" in name or name.startswith("/"):
        return name
    return uri.rsplit("/", 1)[0] + "/" + name if "/" in uri else name


def index_metadata(index: faiss.Index, ids_name: str) -> dict[str, Any]:
    """The sidecar content for ``index`` whose id list is stored as ``ids_name``."""
    kind = index_kind(index)
    concrete = faiss.downcast_index(index)
    return {
        "format": FORMAT,
        "kind": kind,
        "dim": int(index.d),
        "count": int(index.ntotal),
        "metric": metric_name(index),
        "ids": ids_name,
        "nlist": int(concrete.nlist) if kind == "ivf" else None,
        "nprobe": int(concrete.nprobe) if kind == "ivf" else None,
    }


def save_index(index: faiss.Index, uri: str, ids: IdMap | Sequence[str]) -> dict[str, Any]:
    """Write ``index``, its ``ids`` (one per index row, position order) and the sidecar.

    Each object is written atomically by ``storage.write_bytes``. Returns the sidecar dict.
    """
    from uniembed import storage

    id_map = ids if isinstance(ids, IdMap) else IdMap.from_ids(ids)
    if len(id_map) != index.ntotal:
        raise ValueError(f"ids: {len(id_map)} ids for an index of {index.ntotal} rows ({uri})")
    ids_name = _basename(uri) + IDS_SUFFIX
    meta = index_metadata(index, ids_name)
    storage.write_bytes(_sibling(uri, ids_name), id_map.to_bytes())
    storage.write_bytes(uri, index_to_bytes(index))
    storage.write_bytes(sidecar_uri(uri), json.dumps(meta, indent=2).encode("utf-8"))
    return meta


def read_metadata(uri: str) -> dict[str, Any]:
    """The sidecar of the index at ``uri``; ValueError naming the file when malformed."""
    from uniembed import storage

    where = sidecar_uri(uri)
    try:
        meta = json.loads(storage.read_bytes(where).decode("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from e
    missing = [k for k in ("format", "kind", "dim", "count", "metric", "ids") if k not in meta]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    if meta["format"] != FORMAT:
        raise ValueError(f"{where}: format {meta['format']!r}, expected {FORMAT!r}")
    return meta


def load_index(uri: str) -> tuple[faiss.Index, IdMap]:
    """Read an index written by :func:`save_index`; checks it against its sidecar."""
    from uniembed import storage

    meta = read_metadata(uri)
    index = index_from_bytes(storage.read_bytes(uri))
    ids = IdMap.from_bytes(storage.read_bytes(_sibling(uri, meta["ids"])))
    found = {"dim": index.d, "count": index.ntotal, "kind": index_kind(index)}
    for key, value in found.items():
        if meta[key] != value:
            raise ValueError(f"{sidecar_uri(uri)}: {key}={meta[key]!r} but the index has {value!r}")
    if len(ids) != index.ntotal:
        raise ValueError(f"{uri}: {len(ids)} ids for an index of {index.ntotal} rows")
    return index, ids
