"""Duplicate ids in the embed job's input, found before any row is embedded.

Policies (``dedupe`` in the embed config):

- ``quarantine`` (default): the first row with an id is embedded, every later one goes to
  quarantine with the reason ``duplicate id`` and the source of the first;
- ``keep_first``: later rows are left out and counted (``rows_duplicate`` in the summary);
- ``error``: the job stops before any work, naming the first duplicates and their sources.

"First" is input order: files sorted by name, rows in file order. Only the ``items``
format carries user ids; the other formats derive ids from file and line, which are unique.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import pyarrow as pa
import ray

from uniembed import storage
from uniembed.data.read import id_rows

Dedupe = Literal["keep_first", "quarantine", "error"]
DEDUPE_POLICIES: tuple[str, ...] = ("keep_first", "quarantine", "error")
SHOWN = 5


class DuplicateIdError(ValueError):
    """``dedupe: error`` and the input repeats ids; the message names them and their sources."""


def later_duplicates(rows: Iterable[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """``{source: (id, source of the first row with that id)}`` for every row whose id was
    seen before, ``rows`` being ``(id, source)`` in input order. Pure."""
    first: dict[str, str] = {}
    later: dict[str, tuple[str, str]] = {}
    for id_, source in rows:
        if id_ in first:
            later[source] = (id_, first[id_])
        else:
            first[id_] = source
    return later


def _file_ids(uri: str, s3: storage.S3Options) -> pa.Table:
    storage.configure(s3)
    ids, sources = [], []
    for id_, source in id_rows(uri):
        ids.append(id_)
        sources.append(source)
    return pa.table({"id": pa.array(ids, pa.string()), "source": pa.array(sources, pa.string())})


def find_duplicates(files: list[str], fmt: str, policy: str) -> dict[str, tuple[str, str]]:
    """The later duplicates (see :func:`later_duplicates`) of the input ``files`` (one Ray
    task per file, ids only). Raises DuplicateIdError under ``policy == "error"``."""
    if fmt != "items" or not files:
        return {}
    task = ray.remote(num_cpus=0.25)(_file_ids)
    tables = ray.get([task.remote(f, storage.get_options()) for f in files])
    rows = (
        (i, s)
        for t in tables
        for i, s in zip(t["id"].to_pylist(), t["source"].to_pylist(), strict=True)
    )
    later = later_duplicates(rows)
    if later and policy == "error":
        shown = "; ".join(
            f"id {id_!r} at {src} (first at {first})"
            for src, (id_, first) in list(later.items())[:SHOWN]
        )
        raise DuplicateIdError(
            f"input repeats ids in {len(later)} row(s) (dedupe=error): {shown}; "
            "set dedupe=quarantine or dedupe=keep_first to go on"
        )
    return later
