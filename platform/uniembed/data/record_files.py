"""The one reader of record files: every job (embed, mine, tune, distill, evaluate) reads
its records through :func:`file_records` / :func:`folder_records`.

A record file is JSON lines, a JSON list or Parquet, local or ``s3://``; JSON and JSONL may
be gzipped (``.jsonl.gz``, ``.json.gz``). Every record is named by its source ``file:N``:
the N-th line of a JSONL file, the N-th element of a JSON list, the N-th row of a Parquet
file (1-based). A record that cannot be read (bad bytes, invalid JSON, not an object)
is a :class:`RecordError` naming its source; the caller chooses between getting it in
the record's place (``on_error="quarantine"``: one bad record costs one record) and having
it raised (``on_error="raise"``: the jobs that refuse to run on bad input).
"""

from __future__ import annotations

import gzip
import json
import logging
import posixpath
from collections.abc import Iterator
from typing import Any, Literal, overload

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from uniembed import storage
from uniembed.data.records import RecordError

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
RECORD_SUFFIXES = JSON_SUFFIXES + PARQUET_SUFFIXES
PARQUET_BATCH_ROWS = 1024
logger = logging.getLogger(__name__)

OnError = Literal["quarantine", "raise"]
Record = dict[str, Any]


def source_of(uri: str, n: int) -> str:
    """The name of the ``n``-th (1-based) record of file ``uri``: ``file:n``."""
    return f"{uri}:{n}"


def input_files(uri: str, follow_symlinks: bool = False) -> list[str]:
    """The record files at ``uri``: the file itself, or every JSON/JSONL/Parquet file below
    the folder (names starting ``_`` or ``.`` left out), sorted, each real file once.
    Folder links are followed only with ``follow_symlinks``, loops never; what is left out
    is logged (see :func:`storage.list_input_files`). Raises FileNotFoundError naming the
    URI when there are none."""
    if not storage.exists(uri):
        raise FileNotFoundError(f"input {uri} does not exist")
    fs, path = storage.filesystem_for(uri)
    if fs.get_file_info(path).type == pafs.FileType.File:
        return [uri]
    listing = storage.list_input_files(uri, follow_symlinks)
    for skipped in listing.skipped:
        if skipped.folder or skipped.path.endswith(RECORD_SUFFIXES):
            logger.warning("input %s: left out %s", uri, skipped)
    files = [
        f
        for f in listing.files
        if f.endswith(RECORD_SUFFIXES) and not posixpath.basename(f).startswith(("_", "."))
    ]
    if not files:
        raise FileNotFoundError(
            f"input {uri} holds no .jsonl, .json (optionally .gz) or .parquet files"
        )
    return files


def folder_of(uri: str) -> str:
    """The folder of file ``uri`` (relative image paths of its records resolve there)."""
    return uri.rsplit("/", 1)[0] if "/" in uri else "."


def input_root(uri: str) -> str:
    """The folder image paths of the input ``uri`` must stay in: the folder itself, or the
    folder of a single input file."""
    fs, path = storage.filesystem_for(uri)
    return uri if fs.get_file_info(path).type == pafs.FileType.Directory else folder_of(uri)


def read_json_bytes(uri: str) -> bytes:
    """The bytes of a JSON/JSONL file, gunzipped when its name ends in ``.gz``; RecordError
    naming the file when the gzip stream is broken."""
    if not uri.endswith(".gz"):
        return storage.read_bytes(uri)
    try:
        data = storage.read_bytes(uri)  # pyarrow gunzips a local ``.gz`` stream itself
    except storage.StorageError as e:
        if storage.exists(uri):
            raise RecordError(uri, None, f"not a valid gzip file ({e})") from e
        raise
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise RecordError(uri, None, f"not a valid gzip file ({e})") from e


def _parse(data: bytes, src: str) -> Any:
    """The JSON value of UTF-8 ``data``, or a RecordError naming ``src`` (bad bytes,
    invalid JSON)."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        reason = f"not valid UTF-8: byte 0x{data[e.start]:02x} at byte {e.start} ({e.reason})"
        return RecordError(src, None, reason)
    except json.JSONDecodeError as e:
        return RecordError(src, None, f"not valid JSON: {e}")


def _record(value: Any, src: str) -> Record | RecordError:
    if isinstance(value, (dict, RecordError)):
        return value
    return RecordError(src, None, "not a JSON object")


def _json_list(data: bytes, uri: str) -> Iterator[tuple[Record | RecordError, str]]:
    rows = _parse(data, uri)
    if isinstance(rows, RecordError):
        yield rows, uri
        return
    for n, rec in enumerate(rows, start=1):
        src = source_of(uri, n)
        yield _record(rec, src), src


def _json_lines(data: bytes, uri: str) -> Iterator[tuple[Record | RecordError, str]]:
    # Lines are cut on b"\n" only and decoded one by one: one bad byte costs one record,
    # and a U+2028 inside a JSON string does not split its line.
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            src = source_of(uri, n)
            yield _record(_parse(raw.rstrip(b"\r"), src), src), src


def _json_records(uri: str) -> Iterator[tuple[Record | RecordError, str]]:
    try:
        data = read_json_bytes(uri)
    except RecordError as e:
        yield e, uri
        return
    if uri.removesuffix(".gz").endswith(".json") and data.lstrip().startswith(b"["):
        yield from _json_list(data, uri)
    else:
        yield from _json_lines(data, uri)


def parquet_batches(uri: str, columns: list[str] | None = None) -> Iterator[list[Record]]:
    """The rows of one Parquet file as lists of dicts, ``PARQUET_BATCH_ROWS`` at a time;
    ``columns``: only these (the file must have them)."""
    fs, path = storage.filesystem_for(uri)
    with fs.open_input_file(path) as f:
        # pre_buffer (pyarrow's default) keeps every row group it read cached until the file
        # is closed: reading a 1M-row file batch by batch held all of it (0.8 MiB a batch).
        pf = pq.ParquetFile(f, pre_buffer=False)
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            yield batch.to_pylist()


def _parquet_records(uri: str) -> Iterator[tuple[Record | RecordError, str]]:
    n = 0
    for batch in parquet_batches(uri):
        for rec in batch:
            n += 1
            yield rec, source_of(uri, n)


@overload
def file_records(uri: str, on_error: Literal["raise"]) -> Iterator[tuple[Record, str]]: ...
@overload
def file_records(
    uri: str, on_error: Literal["quarantine"] = ...
) -> Iterator[tuple[Record | RecordError, str]]: ...
def file_records(
    uri: str, on_error: OnError = "quarantine"
) -> Iterator[tuple[Record | RecordError, str]]:
    """``(record, source)`` of every record of one JSON, JSONL or Parquet file, in order.

    A record that cannot be read comes as a RecordError naming its source
    (``on_error="quarantine"``), or is raised (``on_error="raise"``: every record yielded
    is then a dict).
    """
    records = _parquet_records(uri) if uri.endswith(PARQUET_SUFFIXES) else _json_records(uri)
    for rec, src in records:
        if on_error == "raise" and isinstance(rec, RecordError):
            raise rec
        yield rec, src


@overload
def folder_records(
    uri: str, on_error: Literal["raise"], follow_symlinks: bool = ...
) -> Iterator[tuple[Record, str, str]]: ...
@overload
def folder_records(
    uri: str, on_error: Literal["quarantine"] = ..., follow_symlinks: bool = ...
) -> Iterator[tuple[Record | RecordError, str, str]]: ...
def folder_records(
    uri: str, on_error: OnError = "quarantine", follow_symlinks: bool = False
) -> Iterator[tuple[Record | RecordError, str, str]]:
    """``(record, source, folder of its file)`` of every record of every file at ``uri``
    (see :func:`input_files`), in order; ``on_error`` as in :func:`file_records`."""
    for f in input_files(uri, follow_symlinks):
        base = folder_of(f)
        for rec, src in file_records(f, on_error):
            yield rec, src, base
