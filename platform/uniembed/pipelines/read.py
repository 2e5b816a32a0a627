"""Read an input corpus (JSONL, JSON or Parquet; local or s3://) as a Ray Dataset of items.

Each file is read by one task that streams its records out in batches, keeping the file and
line of every record so that errors can name them. Records that cannot be converted come
out with the ``error`` column set (they are quarantined downstream, never dropped).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.records import FORMATS, convert_records

JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
_ROWS_PER_BATCH = 1024

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


def input_files(uri: str) -> list[str]:
    """The data files at ``uri``: the file itself, or every JSON/JSONL/Parquet file below
    the folder, sorted. Raises FileNotFoundError naming the URI when there are none."""
    if not storage.exists(uri):
        raise FileNotFoundError(f"input {uri} does not exist")
    fs, path = storage.filesystem_for(uri)
    if fs.get_file_info(path).type == pafs.FileType.File:
        return [uri]
    files = [
        f
        for f in storage.list_files(uri)
        if f.endswith(JSON_SUFFIXES + PARQUET_SUFFIXES)
        and not posixpath.basename(f).startswith(("_", "."))
    ]
    if not files:
        raise FileNotFoundError(f"input {uri} holds no .jsonl, .json or .parquet files")
    return files


def _folder(uri: str) -> str:
    return uri.rsplit("/", 1)[0] if "/" in uri else "."


def _json_records(uri: str) -> Iterator[tuple[dict[str, Any] | Exception, str]]:
    text = storage.read_text(uri)
    name = uri
    stripped = text.lstrip()
    if uri.endswith(".json") and stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            yield ValueError(f"{name}: not valid JSON: {e}"), name
            return
        for i, rec in enumerate(rows):
            src = f"{name}[{i}]"
            yield (rec if isinstance(rec, dict) else ValueError(f"{src}: not an object")), src
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        src = f"{name}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            yield ValueError(f"{src}: not valid JSON: {e.msg}"), src
            continue
        yield (rec if isinstance(rec, dict) else ValueError(f"{src}: not a JSON object")), src


def _parquet_records(uri: str) -> Iterator[tuple[dict[str, Any] | Exception, str]]:
    fs, path = storage.filesystem_for(uri)
    with fs.open_input_file(path) as f:
        pf = pq.ParquetFile(f)
        row = 0
        for batch in pf.iter_batches(batch_size=_ROWS_PER_BATCH):
            for rec in batch.to_pylist():
                yield rec, f"{uri}#row{row}"
                row += 1


def file_records(uri: str) -> Iterator[tuple[dict[str, Any] | Exception, str]]:
    """``(record, source)`` of every record of one JSON, JSONL or Parquet file, in order.

    ``source`` is ``file:line``, ``file[i]`` or ``file#rowN``; a record that cannot be read
    (invalid JSON, not an object) comes as a ValueError naming it, so the caller can
    quarantine it instead of stopping.
    """
    return _parquet_records(uri) if uri.endswith(PARQUET_SUFFIXES) else _json_records(uri)


def iter_item_rows(uri: str, fmt: str) -> Iterator[dict[str, Any]]:
    """Item rows (with ``source`` and ``error``) of one input file, in file order."""
    yield from convert_records(file_records(uri), fmt, _folder(uri))


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


def _read_files_fn(fmt: str, s3: storage.S3Options):  # noqa: ANN202
    """A Ray Data UDF: a batch of file URIs in, item batches out (a generator: streams)."""

    def read(batch: dict[str, Any]) -> Iterator[pa.Table]:
        storage.configure(s3)  # the worker may be another process or machine
        for uri in batch["path"]:
            yield from _batches(iter_item_rows(str(uri), fmt))

    return read


def read_items(uri: str, fmt: str = "items", *, cpus_per_task: float = 0.25) -> ray.data.Dataset:
    """A Ray Dataset of item rows read from ``uri`` (a file or a folder of files).

    Columns: id, text, image, image_uri, instruction, source, error.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; expected one of {list(FORMATS)}")
    files = input_files(uri)
    files_ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files))
    return files_ds.map_batches(
        _read_files_fn(fmt, storage.get_options()),
        batch_size=1,
        batch_format="numpy",
        num_cpus=cpus_per_task,
    )
