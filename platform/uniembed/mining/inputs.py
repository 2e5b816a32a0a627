"""The mine job's inputs: queries with their positive's id, and the candidate pool.

Two layouts:

- ``items``: queries are item records (``id``, ``text``, ``image``/``image_uri``,
  ``instruction``) plus ``pos_id``, the id of the positive in the pool file (also items).
- ``pairs``: records ``id``, ``image``, ``title`` (the demo's openclipart pairs): the query
  is the image (``<id>#image``) and its positive the title (``<id>#title``); the pool is
  every pair's title.

Queries are cut into shards of ``shard_size`` consecutive records (``shard-000000`` ...),
the unit the job writes, skips on a rerun and reports on. Query reading is one streaming
task (records are numbered in file order); the pool is read by one task per file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from uniembed import storage
from uniembed.data import demo
from uniembed.data import schema as S
from uniembed.data.images import link_note, path_allowed
from uniembed.data.read import READ_SCHEMA
from uniembed.data.record_files import (
    file_records,
    folder_of,
    folder_records,
    input_files,
    input_root,
)
from uniembed.data.records import (
    RecordError,
    check_text,
    check_unicode,
    error_item,
    items_from_item_record,
    record_id,
)
from uniembed.observe.names import named

PAIR_QUERY_SUFFIX = "#image"
PAIR_POS_SUFFIX = "#title"
PAIRS_INSTRUCTION = "Find the title of this clip-art picture."

ITEM_FIELDS = list(READ_SCHEMA)  # the embed reader's columns, then the mine job's own
QUERY_SCHEMA = pa.schema(
    [
        *ITEM_FIELDS,
        pa.field(S.POS_ID, pa.string()),
        pa.field(S.ORDINAL, pa.int64()),
        pa.field(S.SHARD, pa.string()),
        pa.field(S.SHARD_ROWS, pa.int64()),
    ]
)
POOL_SCHEMA = pa.schema([*ITEM_FIELDS, pa.field(S.GROUP, pa.string())])


def shard_name(index: int) -> str:
    """``shard-000003`` for the fourth shard of ``shard_size`` queries."""
    return f"shard-{index:06d}"


# Where a record's image paths may point: (the input's folder, further allowed prefixes).
Allowed = tuple[str | None, tuple[str, ...]]
ANYWHERE: Allowed = (None, ())


def check_image_path(item: dict[str, Any], source: str, allowed: Allowed) -> dict[str, Any]:
    """``item``, or RecordError when its image path leaves the input folder and the allowed
    prefixes (``../x.png``, ``/etc/hostname``)."""
    uri = item.get(S.IMAGE_URI)
    root, prefixes = allowed
    if uri and not path_allowed(uri, root, prefixes):
        raise RecordError(
            source,
            S.IMAGE_URI,
            f"{uri}{link_note(uri)} is outside the input folder {root} and the allowed image "
            f"prefixes ({', '.join(prefixes) or 'none'}); set image_prefixes to allow it",
        )
    return item


def query_row(
    rec: Mapping[str, Any], source: str, base: str, fmt: str, allowed: Allowed = ANYWHERE
) -> dict[str, Any]:
    """One query record as an item row with ``pos_id``; RecordError when malformed."""
    if fmt == "pairs":
        pid = record_id(rec.get(S.ID), source)
        if pid is None:
            raise RecordError(source, S.ID, "missing required field")
        image = rec.get(demo.PAIR_IMAGE)
        if not isinstance(image, str) or not image:
            raise RecordError(source, demo.PAIR_IMAGE, "missing image path")
        check_text(image, source, demo.PAIR_IMAGE, path=True)
        item = items_from_item_record(
            {S.ID: f"{pid}{PAIR_QUERY_SUFFIX}", S.IMAGE_URI: image}, source, base
        )[0]
        item[S.INSTRUCTION] = PAIRS_INSTRUCTION
        item[S.POS_ID] = f"{pid}{PAIR_POS_SUFFIX}"
        return check_image_path(item, source, allowed)
    item = check_image_path(items_from_item_record(rec, source, base)[0], source, allowed)
    pos = record_id(rec.get(S.POS_ID), source, S.POS_ID)
    if pos is None:
        raise RecordError(source, S.POS_ID, "missing the positive's id")
    item[S.POS_ID] = pos
    return item


def pool_row(
    rec: Mapping[str, Any],
    source: str,
    base: str,
    fmt: str,
    group_field: str | None,
    allowed: Allowed = ANYWHERE,
) -> dict[str, Any]:
    """One pool record as an item row with its group; RecordError when malformed."""
    if fmt == "pairs":
        pid = record_id(rec.get(S.ID), source)
        title = rec.get(demo.TITLE)
        if pid is None:
            raise RecordError(source, S.ID, "missing required field")
        if not isinstance(title, str) or not title.strip():
            raise RecordError(source, demo.TITLE, "empty title")
        check_text(title, source, demo.TITLE)
        rec = {S.ID: f"{pid}{PAIR_POS_SUFFIX}", S.TEXT: title}
    item = check_image_path(items_from_item_record(rec, source, base)[0], source, allowed)
    item[S.GROUP] = record_id(rec.get(group_field), source, group_field) if group_field else None
    return item


def _convert(rec: dict[str, Any] | Exception, source: str, convert: Any) -> dict[str, Any]:
    if isinstance(rec, Exception):
        return error_item(source, str(rec))
    try:
        row = convert(rec, source)
        check_unicode(row, source)
        row[S.ERROR] = None
        return row
    except RecordError as e:
        try:
            rid = record_id(rec.get(S.ID), source)
        except RecordError:
            rid = None  # the id itself is the bad value: the row goes by its source
        return error_item(source, str(e), rid)


def iter_query_shards(
    uri: str,
    fmt: str,
    shard_size: int,
    max_queries: int | None,
    skip: frozenset[str],
    allowed: Allowed = ANYWHERE,
    follow_symlinks: bool = False,
) -> Iterator[pa.Table]:
    """Query shards (QUERY_SCHEMA tables) in input order, leaving out the shards in ``skip``;
    ``follow_symlinks``: read record files through folder links (see ``input_files``)."""
    buf: list[dict[str, Any]] = []

    def flush(index: int) -> Iterator[pa.Table]:
        name = shard_name(index)
        if name not in skip:
            for row in buf:
                row[S.SHARD], row[S.SHARD_ROWS] = name, len(buf)
            yield pa.Table.from_pylist(buf, schema=QUERY_SCHEMA)
        buf.clear()

    ordinal = 0
    for rec, source, base in folder_records(uri, follow_symlinks=follow_symlinks):
        if max_queries is not None and ordinal >= max_queries:
            break
        row = _convert(rec, source, lambda r, s: query_row(r, s, base, fmt, allowed))
        row.setdefault(S.POS_ID, None)
        row[S.ORDINAL] = ordinal
        buf.append(row)
        ordinal += 1
        if len(buf) == shard_size:
            yield from flush(ordinal // shard_size - 1)
    if buf:
        yield from flush((ordinal - 1) // shard_size)


def read_queries(
    uri: str,
    fmt: str,
    shard_size: int,
    max_queries: int | None,
    skip: frozenset[str],
    image_prefixes: tuple[str, ...] = (),
    follow_symlinks: bool = False,
) -> ray.data.Dataset:
    """A Ray Dataset of query rows (QUERY_SCHEMA), shard after shard, streamed by one task.
    Image paths must stay inside the input's folder or under ``image_prefixes``."""
    s3 = storage.get_options()
    input_files(uri, follow_symlinks)  # fail fast, in the driver, on a missing input
    allowed = (input_root(uri), image_prefixes)

    def read(batch: dict[str, Any]) -> Iterator[pa.Table]:
        storage.configure(s3)
        yield from iter_query_shards(
            uri, fmt, shard_size, max_queries, skip, allowed, follow_symlinks
        )

    return ray.data.from_items([{"path": uri}]).map_batches(
        named(read, "mine/read-queries"), batch_size=1, batch_format="numpy", num_cpus=0.25
    )


def iter_pool_rows(
    uri: str, fmt: str, group_field: str | None, allowed: Allowed = ANYWHERE
) -> Iterator[pa.Table]:
    """Pool rows (POOL_SCHEMA) of one pool file, in batches of 1024."""
    buf: list[dict[str, Any]] = []
    base = folder_of(uri)
    for rec, source in file_records(uri):
        row = _convert(rec, source, lambda r, s: pool_row(r, s, base, fmt, group_field, allowed))
        row.setdefault(S.GROUP, None)
        buf.append(row)
        if len(buf) == 1024:
            yield pa.Table.from_pylist(buf, schema=POOL_SCHEMA)
            buf = []
    if buf:
        yield pa.Table.from_pylist(buf, schema=POOL_SCHEMA)


def read_pool(
    uri: str,
    fmt: str,
    group_field: str | None,
    image_prefixes: tuple[str, ...] = (),
    follow_symlinks: bool = False,
) -> ray.data.Dataset:
    """A Ray Dataset of pool rows (POOL_SCHEMA), one read task per file. Image paths must
    stay inside the input's folder or under ``image_prefixes``."""
    s3 = storage.get_options()
    files = input_files(uri, follow_symlinks)
    allowed = (input_root(uri), image_prefixes)

    def read(batch: dict[str, Any]) -> Iterator[pa.Table]:
        storage.configure(s3)
        for f in batch["path"]:
            yield from iter_pool_rows(str(f), fmt, group_field, allowed)

    return ray.data.from_items(
        [{"path": f} for f in files], override_num_blocks=len(files)
    ).map_batches(named(read, "mine/read-pool"), batch_size=1, batch_format="numpy", num_cpus=0.25)


def name_pool_sources(quarantine_dir: str, items_dir: str) -> None:
    """Name the pool file's own ``file:line`` in the embed stage's quarantine.

    The mine job embeds its pool from the staged items (``pool/items``), so a row the embed
    stage sets aside (no text nor image, an image it cannot read) is named by a staged
    shard's row; each staged item keeps its record's source, which replaces it here. Reads
    only the staged ``id`` and ``source`` of the quarantined ids, file by file.
    """
    files = storage.list_files(quarantine_dir, suffix=".parquet")
    tables = {f: storage.read_parquet(f) for f in files}
    ids = pa.array({i for t in tables.values() for i in t[S.ID].to_pylist()}, pa.string())
    if len(ids) == 0:
        return
    where: dict[str, str] = {}
    for f in storage.list_files(items_dir, suffix=".parquet"):
        staged = storage.read_parquet(f, columns=[S.ID, S.SOURCE])
        staged = staged.filter(pc.is_in(staged[S.ID], value_set=ids))
        where.update(zip(staged[S.ID].to_pylist(), staged[S.SOURCE].to_pylist(), strict=True))
    for f, t in tables.items():
        old = t[S.SOURCE].to_pylist()
        new = [where.get(i) or s for i, s in zip(t[S.ID].to_pylist(), old, strict=True)]
        if new != old:
            at = t.schema.get_field_index(S.SOURCE)
            storage.write_parquet(f, t.set_column(at, S.SOURCE, pa.array(new, pa.string())))
