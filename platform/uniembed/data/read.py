"""Read an input corpus (JSONL, JSON or Parquet; local or s3://) as a Ray Dataset of items.

Records come from the one record reader, :mod:`uniembed.data.record_files` (the suffixes,
gzip, ``file:line`` sources). Each file is read by one task that streams its records out
in batches. Records that cannot be read or converted come out with the ``error`` column
set (they are quarantined downstream, never dropped).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.images import link_note, path_allowed
from uniembed.data.record_files import (
    PARQUET_SUFFIXES,
    file_records,
    folder_of,
    input_files,
    parquet_batches,
    source_of,
)
from uniembed.data.records import FORMATS, RecordError, convert_records, record_id
from uniembed.observe.names import named

# Arrow types of the rows that leave the reader.
READ_SCHEMA = pa.schema(
    [
        pa.field(S.ID, pa.string()),
        pa.field(S.TEXT, pa.string()),
        pa.field(S.IMAGE, pa.binary()),
        pa.field(S.IMAGE_URI, pa.string()),
        pa.field(S.INSTRUCTION, pa.string()),
        pa.field(S.SOURCE, pa.string()),
        pa.field(S.ERROR, pa.string()),
    ]
)
_ROWS_PER_BATCH = 1024


@dataclass(frozen=True)
class ReadOptions:
    """How the embed job reads: picklable, shipped to the read tasks.

    ``root``: image paths must resolve inside this folder or under ``image_prefixes``
    (None: no check), judged where they really point (links resolved).
    ``follow_symlinks``: read record files through folder links (see ``input_files``).
    ``duplicates``: source -> (id, source of the first row with that id)
    for every later row; ``dedupe`` says what becomes of them (see :mod:`.embed_dedupe`).
    """

    fmt: str = "items"
    root: str | None = None
    image_prefixes: tuple[str, ...] = ()
    duplicates: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    dedupe: str = "quarantine"
    follow_symlinks: bool = False


def _check_row(row: dict[str, Any], options: ReadOptions) -> dict[str, Any] | None:
    """``row`` with its error set for a duplicate id or an image path outside the allowed
    folders; None for a duplicate dropped under ``keep_first``."""
    if row[S.ERROR]:
        return row
    source = row[S.SOURCE]
    dup = options.duplicates.get(source)
    if dup is not None:
        if options.dedupe == "keep_first":
            return None
        row[S.ERROR] = f"{source}: field 'id': duplicate id {dup[0]!r} (first at {dup[1]})"
        return row
    uri = row[S.IMAGE_URI]
    if uri and not path_allowed(uri, options.root, options.image_prefixes):
        allowed = ", ".join((options.root or "", *options.image_prefixes))
        row[S.ERROR] = (
            f"{source}: field 'image_uri': {uri}{link_note(uri)} is outside the input folder "
            f"and the allowed image prefixes ({allowed}); set image_prefixes to allow it"
        )
    return row


def iter_item_rows(
    uri: str, fmt: str, options: ReadOptions | None = None
) -> Iterator[dict[str, Any]]:
    """Item rows (with ``source`` and ``error``) of one input file, in file order."""
    options = options or ReadOptions(fmt=fmt)
    for row in convert_records(file_records(uri), fmt, folder_of(uri)):
        checked = _check_row(row, options)
        if checked is not None:
            yield checked


def _valid_id(value: Any, source: str) -> str | None:
    try:
        return record_id(value, source)
    except RecordError:
        return None  # the reader quarantines the row, naming the field


def id_rows(uri: str) -> Iterator[tuple[str, str]]:
    """``(id, source)`` of every item-format record of one file that has a valid id (see
    ``records.record_id``), in file order; cheap (Parquet: the id column only). For finding
    duplicate ids before any work: a row whose id is bad is left to the reader, which
    quarantines it naming the field."""
    if uri.endswith(PARQUET_SUFFIXES):
        fs, path = storage.filesystem_for(uri)
        with fs.open_input_file(path) as f:
            if S.ID not in pq.ParquetFile(f).schema_arrow.names:
                return
        n = 0
        for batch in parquet_batches(uri, columns=[S.ID]):
            for rec in batch:
                n += 1
                id_ = _valid_id(rec[S.ID], source_of(uri, n))
                if id_ is not None:
                    yield id_, source_of(uri, n)
        return
    for rec, source in file_records(uri):
        id_ = _valid_id(rec.get(S.ID), source) if isinstance(rec, dict) else None
        if id_ is not None:
            yield id_, source


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[pa.Table]:
    buf: list[dict[str, Any]] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= _ROWS_PER_BATCH:
            yield pa.Table.from_pylist(buf, schema=READ_SCHEMA)
            buf = []
    if buf:
        yield pa.Table.from_pylist(buf, schema=READ_SCHEMA)


def read_table(uri: str, fmt: str = "items") -> pa.Table:
    """The whole input as one Arrow table, in the driver: for small sets and tests."""
    tables = [t for f in input_files(uri) for t in _batches(iter_item_rows(f, fmt))]
    return pa.concat_tables(tables) if tables else READ_SCHEMA.empty_table()


def _read_files_fn(options: ReadOptions, s3: storage.S3Options):  # noqa: ANN202
    """A Ray Data UDF: a batch of file URIs in, item batches out (a generator: streams)."""

    def read(batch: dict[str, Any]) -> Iterator[pa.Table]:
        storage.configure(s3)  # the worker may be another process or machine
        for uri in batch["path"]:
            yield from _batches(iter_item_rows(str(uri), options.fmt, options))

    return read


def read_items(
    uri: str,
    fmt: str = "items",
    *,
    cpus_per_task: float = 0.25,
    options: ReadOptions | None = None,
    stage: str = "read",
) -> ray.data.Dataset:
    """A Ray Dataset of item rows read from ``uri`` (a file or a folder of files); its
    operator is named ``stage`` (``embed/read``).

    Columns: id, text, image, image_uri, instruction, source, error.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; expected one of {list(FORMATS)}")
    options = options or ReadOptions(fmt=fmt)
    files = input_files(uri, options.follow_symlinks)
    files_ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files))
    return files_ds.map_batches(
        named(_read_files_fn(options, storage.get_options()), stage),
        batch_size=1,
        batch_format="numpy",
        num_cpus=cpus_per_task,
    )
