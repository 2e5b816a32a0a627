"""Read an input corpus (JSONL, JSON or Parquet; local or s3://) as a Ray Dataset of items.

JSON and JSONL files may be gzipped (``.jsonl.gz``, ``.json.gz``); every reader of records
(the embed and mine inputs, the training rows, the evaluation tasks) takes the same
suffixes, :data:`RECORD_SUFFIXES`, through :func:`file_records` / :func:`read_json_bytes`.

Each file is read by one task that streams its records out in batches, keeping the file and
line of every record so that errors can name them. Records that cannot be converted come
out with the ``error`` column set (they are quarantined downstream, never dropped).
"""

from __future__ import annotations

import gzip
import json
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.images import path_allowed
from uniembed.data.records import FORMATS, convert_records
from uniembed.observe.names import named

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
RECORD_SUFFIXES = JSON_SUFFIXES + PARQUET_SUFFIXES
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
        raise FileNotFoundError(
            f"input {uri} holds no .jsonl, .json (optionally .gz) or .parquet files"
        )
    return files


def _folder(uri: str) -> str:
    return uri.rsplit("/", 1)[0] if "/" in uri else "."


def input_root(uri: str) -> str:
    """The folder image paths of the input ``uri`` must stay in: the folder itself, or the
    folder of a single input file."""
    fs, path = storage.filesystem_for(uri)
    return uri if fs.get_file_info(path).type == pafs.FileType.Directory else _folder(uri)


def _decode(data: bytes, src: str) -> str | ValueError:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        return ValueError(
            f"{src}: not valid UTF-8: byte 0x{data[e.start]:02x} at byte {e.start} ({e.reason})"
        )


def read_json_bytes(uri: str) -> bytes:
    """The bytes of a JSON/JSONL file, gunzipped when its name ends in ``.gz``; ValueError
    naming the file when the gzip stream is broken."""
    if not uri.endswith(".gz"):
        return storage.read_bytes(uri)
    try:
        data = storage.read_bytes(uri)  # pyarrow gunzips a local ``.gz`` stream itself
    except storage.StorageError as e:
        if storage.exists(uri):
            raise ValueError(f"{uri}: not a valid gzip file ({e})") from e
        raise
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise ValueError(f"{uri}: not a valid gzip file ({e})") from e


def _json_records(uri: str) -> Iterator[tuple[dict[str, Any] | Exception, str]]:
    name = uri
    try:
        data = read_json_bytes(uri)
    except ValueError as e:
        yield e, name
        return
    if uri.removesuffix(".gz").endswith(".json") and data.lstrip().startswith(b"["):
        text = _decode(data, name)
        if isinstance(text, ValueError):
            yield text, name
            return
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            yield ValueError(f"{name}: not valid JSON: {e}"), name
            return
        for i, rec in enumerate(rows):
            src = f"{name}[{i}]"
            yield (rec if isinstance(rec, dict) else ValueError(f"{src}: not an object")), src
        return
    # Lines are cut on b"\n" only and decoded one by one: one bad byte costs one record,
    # and a U+2028 inside a JSON string does not split its line.
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        src = f"{name}:{lineno}"
        line = _decode(raw.rstrip(b"\r"), src)
        if isinstance(line, ValueError):
            yield line, src
            continue
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


@dataclass(frozen=True)
class ReadOptions:
    """How the embed job reads: picklable, shipped to the read tasks.

    ``root``: image paths must resolve inside this folder or under ``image_prefixes``
    (None: no check). ``duplicates``: source -> (id, source of the first row with that id)
    for every later row; ``dedupe`` says what becomes of them (see :mod:`.embed_dedupe`).
    """

    fmt: str = "items"
    root: str | None = None
    image_prefixes: tuple[str, ...] = ()
    duplicates: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    dedupe: str = "quarantine"


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
            f"{source}: field 'image_uri': {uri} is outside the input folder and the "
            f"allowed image prefixes ({allowed}); set image_prefixes to allow it"
        )
    return row


def iter_item_rows(
    uri: str, fmt: str, options: ReadOptions | None = None
) -> Iterator[dict[str, Any]]:
    """Item rows (with ``source`` and ``error``) of one input file, in file order."""
    options = options or ReadOptions(fmt=fmt)
    for row in convert_records(file_records(uri), fmt, _folder(uri)):
        checked = _check_row(row, options)
        if checked is not None:
            yield checked


def id_rows(uri: str) -> Iterator[tuple[str, str]]:
    """``(id, source)`` of every item-format record of one file that has an id, in file
    order; cheap (Parquet: the id column only). For finding duplicate ids before any work."""
    if uri.endswith(PARQUET_SUFFIXES):
        fs, path = storage.filesystem_for(uri)
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            if S.ID not in pf.schema_arrow.names:
                return
            row = 0
            for batch in pf.iter_batches(batch_size=_ROWS_PER_BATCH, columns=[S.ID]):
                for value in batch.column(0).to_pylist():
                    if value not in (None, ""):
                        yield str(value), f"{uri}#row{row}"
                    row += 1
        return
    for rec, source in _json_records(uri):
        if isinstance(rec, dict) and rec.get(S.ID) not in (None, ""):
            yield str(rec[S.ID]), source


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
    files = input_files(uri)
    files_ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files))
    return files_ds.map_batches(
        named(_read_files_fn(options or ReadOptions(fmt=fmt), storage.get_options()), stage),
        batch_size=1,
        batch_format="numpy",
        num_cpus=cpus_per_task,
    )
