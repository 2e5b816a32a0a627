"""Training rows: read, normalise and check them chunk by chunk, before any worker trains.

Stage 2 reads three formats into the columns of ``MINED_SCHEMA`` (the mine job's output):

- ``mined``: Parquet in ``MINED_SCHEMA`` (file or folder);
- ``unime_v2``: the published UniME-V2 scored JSON (a list, or JSON lines) with
  ``query_text, query_image, pos_text, pos_image, query_pos_scores, hard_negatives
  [[text, image]...], hard_negatives_scores``;
- ``mmeb_train``: MMEB-train rows ``qry, qry_image_path, pos_text, pos_image_path`` and
  optional ``neg_text, neg_image_path`` (JSON lines, JSON or Parquet).

The two published formats are parsed by ``records.parse_unime_v2`` / ``parse_mmeb_train``,
the same parse the embed and mine jobs take their items from; records come from the one
record reader (``record_files``), which raises on an unreadable one.

Stage 1 reads texts (``id``, ``text``) and, optionally, the teacher's embeddings by id.
Every problem with a row is a :class:`TrainingDataError` naming the file, row and field:
raised, or, when the caller passes a :class:`Quarantine` (the jobs do), recorded there and
the row left out. A problem with a whole file (missing, unreadable folder, teacher vectors
of different sizes) is always raised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.images import resolve_uri
from uniembed.data.record_files import folder_records
from uniembed.data.records import (
    PublishedRecord,
    RecordError,
    check_text,
    parse_mmeb_train,
    parse_unime_v2,
    record_id,
)
from uniembed.data.shards import MANIFEST

TUNE_COLUMNS = (
    S.QUERY_ID,
    S.QUERY_TEXT,
    S.QUERY_IMAGE,
    S.QUERY_INSTRUCTION,
    S.POS_TEXT,
    S.POS_IMAGE,
    S.POS_SCORE,
    S.NEG_TEXTS,
    S.NEG_IMAGES,
    S.NEG_SCORES,
)
TUNE_SCHEMA = pa.schema(
    [f for f in S.MINED_SCHEMA if f.name in TUNE_COLUMNS] + [pa.field(S.SOURCE, pa.string())]
)
DISTILL_SCHEMA = pa.schema(
    [pa.field(S.ID, pa.string()), pa.field(S.TEXT, pa.string()), pa.field(S.SOURCE, pa.string())]
)


class TrainingDataError(ValueError):
    """A training row or file is unusable; the message names the file and the row."""


@dataclass
class Quarantine:
    """The rows a reader left out, in input order: ``QUARANTINE_SCHEMA`` rows (id, stage,
    reason naming file:line and field, source)."""

    stage: str = "read"
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, error: Exception, source: str, id_: str | None = None) -> None:
        """Record one row left out for ``error``."""
        self.rows.append(
            {S.ID: id_ or source, S.STAGE: self.stage, S.REASON: str(error), S.SOURCE: source}
        )

    def __len__(self) -> int:
        return len(self.rows)

    def reasons(self, n: int) -> tuple[str, ...]:
        """The first ``n`` reasons."""
        return tuple(str(r[S.REASON]) for r in self.rows[:n])

    def table(self) -> pa.Table:
        """The rows as a ``QUARANTINE_SCHEMA`` table."""
        return pa.Table.from_pylist(self.rows, schema=S.QUARANTINE_SCHEMA)


def _keep_or_raise(quarantine: Quarantine | None, error: Exception, src: str, id_: Any) -> None:
    """Raise ``error`` as a TrainingDataError, or record it in ``quarantine``."""
    if quarantine is None:
        if isinstance(error, TrainingDataError):
            raise error
        raise TrainingDataError(str(error)) from error
    quarantine.add(error, src, id_ if isinstance(id_, str) else None)


# Where a finished mine output (``_SUCCESS.json`` at its root) keeps each format's rows.
MINE_OUTPUT_FOLDERS = {"mined": "mined", "unime_v2": "export"}


def rows_location(uri: str, fmt: str) -> str:
    """``uri`` itself, or its ``mined/`` / ``export/`` folder when ``uri`` is a whole mine
    output (the folder the mine job printed), so both forms of ``--input`` work."""
    sub = MINE_OUTPUT_FOLDERS.get(fmt)
    if sub and storage.exists(storage.join(uri, MANIFEST)):
        inner = storage.join(uri, sub)
        if storage.list_files(inner):
            return inner
    return uri


def _records(uri: str) -> Iterator[tuple[dict[str, Any] | RecordError, str, str]]:
    """``(record or the RecordError of an unreadable one, source "file:line", folder of the
    file)`` for every record under ``uri``; TrainingDataError for no input."""
    try:
        yield from folder_records(uri, on_error="quarantine")
    except FileNotFoundError as e:
        raise TrainingDataError(str(e)) from e


def _uri(value: Any, base: str) -> str | None:
    return resolve_uri(value, base) if isinstance(value, str) and value else None


def check_tune_row(row: dict[str, Any]) -> None:
    """Raise TrainingDataError unless ``row`` (TUNE columns) has a query, a positive and
    one score per negative."""
    src = f"{row[S.SOURCE]} (query {row[S.QUERY_ID]})"
    if not row[S.QUERY_TEXT] and not row[S.QUERY_IMAGE]:
        raise TrainingDataError(f"{src}: the query has neither text nor image")
    if not row[S.POS_TEXT] and not row[S.POS_IMAGE]:
        raise TrainingDataError(f"{src}: no positive ({S.POS_TEXT} and {S.POS_IMAGE} empty)")
    texts, images, scores = row[S.NEG_TEXTS], row[S.NEG_IMAGES], row[S.NEG_SCORES]
    if len(images) != len(texts):
        raise TrainingDataError(
            f"{src}: {S.NEG_IMAGES} has {len(images)} entries for {len(texts)} negatives"
        )
    if scores is not None and len(scores) != len(texts):
        raise TrainingDataError(
            f"{src}: {S.NEG_SCORES} has {len(scores)} scores for {len(texts)} negatives"
        )
    for j, (t, im) in enumerate(zip(texts, images)):
        if not t and not im:
            raise TrainingDataError(f"{src}: negative {j} has neither text nor image")
    # A NaN score would only fail inside the loss, on a worker, after the trainer's retries.
    for j, score in enumerate(scores or []):
        if score is None or not math.isfinite(score):
            raise TrainingDataError(f"{src}: {S.NEG_SCORES}[{j}] is {score}, not a finite score")
    pos = row.get(S.POS_SCORE)
    if pos is not None and not math.isfinite(pos):
        raise TrainingDataError(f"{src}: {S.POS_SCORE} is {pos}, not a finite score")


def _from_mined(rec: dict[str, Any], src: str, base: str) -> dict[str, Any]:
    negs = list(rec.get(S.NEG_TEXTS) or [])
    return {
        S.QUERY_ID: str(rec.get(S.QUERY_ID) or src),
        S.QUERY_TEXT: rec.get(S.QUERY_TEXT),
        S.QUERY_IMAGE: _uri(rec.get(S.QUERY_IMAGE), base),
        S.QUERY_INSTRUCTION: rec.get(S.QUERY_INSTRUCTION),
        S.POS_TEXT: rec.get(S.POS_TEXT),
        S.POS_IMAGE: _uri(rec.get(S.POS_IMAGE), base),
        S.POS_SCORE: rec.get(S.POS_SCORE),
        S.NEG_TEXTS: negs,
        S.NEG_IMAGES: [_uri(u, base) for u in (rec.get(S.NEG_IMAGES) or [None] * len(negs))],
        S.NEG_SCORES: rec.get(S.NEG_SCORES),
    }


def _from_published(parsed: PublishedRecord, src: str, base: str) -> dict[str, Any]:
    """The training-row view of a published record (the item view is in ``records``)."""
    return {
        S.QUERY_ID: parsed.id or src,
        S.QUERY_TEXT: parsed.query.text,
        S.QUERY_IMAGE: _uri(parsed.query.image, base),
        S.QUERY_INSTRUCTION: None,
        S.POS_TEXT: parsed.pos.text,
        S.POS_IMAGE: _uri(parsed.pos.image, base),
        S.POS_SCORE: parsed.pos_score,
        S.NEG_TEXTS: [n.text for n in parsed.negatives],
        S.NEG_IMAGES: [_uri(n.image, base) for n in parsed.negatives],
        S.NEG_SCORES: parsed.neg_scores,
    }


def _from_unime_v2(rec: dict[str, Any], src: str, base: str) -> dict[str, Any]:
    return _from_published(parse_unime_v2(rec, src), src, base)


def _from_mmeb_train(rec: dict[str, Any], src: str, base: str) -> dict[str, Any]:
    return _from_published(parse_mmeb_train(rec, src), src, base)


_READERS = {"mined": _from_mined, "unime_v2": _from_unime_v2, "mmeb_train": _from_mmeb_train}


ROWS_PER_CHUNK = 4096


def _tune_row(fmt: str, rec: dict[str, Any], src: str, base: str, need_scores: bool) -> dict:
    """One record as a checked ``TUNE_SCHEMA`` row; TrainingDataError naming the field."""
    try:
        row = _READERS[fmt](rec, src, base)
    except RecordError as e:
        raise TrainingDataError(str(e)) from e
    row[S.SOURCE] = src
    check_tune_row(row)
    if row[S.NEG_SCORES] is None:
        if need_scores and row[S.NEG_TEXTS]:
            raise TrainingDataError(
                f"{src} (query {row[S.QUERY_ID]}): no judge scores ({S.NEG_SCORES}) but "
                "the soft_label loss needs them"
            )
        row[S.NEG_SCORES] = [0.0] * len(row[S.NEG_TEXTS])
    if row[S.POS_SCORE] is None:
        row[S.POS_SCORE] = 1.0
    return row


def _table(rows: list[dict], schema: pa.Schema, quarantine: Quarantine | None) -> pa.Table:
    """``rows`` as a ``schema`` table. A value Arrow refuses (a list where a string goes,
    ...) is found row by row only when the chunk fails, and is raised or quarantined
    naming the row."""
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowException, TypeError, ValueError):
        pass
    kept = []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=schema)
        except (pa.ArrowException, TypeError, ValueError) as e:
            src = row[S.SOURCE]
            error = TrainingDataError(f"{src}: a value of the wrong type: {e}")
            _keep_or_raise(quarantine, error, src, row.get(S.QUERY_ID, row.get(S.ID)))
            continue
        kept.append(row)
    return pa.Table.from_pylist(kept, schema=schema)


RowMaker = Callable[[dict[str, Any], str, str], dict[str, Any]]


def _checked_chunks(
    uri: str,
    make_row: RowMaker,
    schema: pa.Schema,
    id_field: str,
    chunk_rows: int,
    quarantine: Quarantine | None,
) -> Iterator[pa.Table]:
    """``make_row(record, source, folder)`` of every record under ``uri`` as ``schema``
    tables of ``chunk_rows`` rows in input order, none empty. A record that cannot be read
    or made a row (RecordError, TrainingDataError) raises TrainingDataError, after the
    chunks before it were yielded, or with ``quarantine`` is recorded there (under its
    ``id_field``) and left out."""
    # Rows become Arrow a chunk at a time: a list of a million row dicts was most of the
    # driver's memory (about 4.6 KiB a row); a caller keeps a chunk or moves it elsewhere.
    rows: list[dict[str, Any]] = []
    for rec, src, base in _records(uri):
        try:
            if isinstance(rec, RecordError):
                raise rec
            rows.append(make_row(rec, src, base))
        except (RecordError, TrainingDataError) as e:
            _keep_or_raise(quarantine, e, src, rec.get(id_field) if isinstance(rec, dict) else None)
        if len(rows) >= chunk_rows:
            table = _table(rows, schema, quarantine)
            rows = []
            if table.num_rows:
                yield table
    if rows:
        table = _table(rows, schema, quarantine)
        if table.num_rows:
            yield table


def iter_tune_chunks(
    uri: str,
    fmt: str,
    need_scores: bool = False,
    chunk_rows: int = ROWS_PER_CHUNK,
    quarantine: Quarantine | None = None,
) -> Iterator[pa.Table]:
    """The training rows under ``uri`` in format ``fmt``, checked, as ``TUNE_SCHEMA`` tables
    of ``chunk_rows`` rows in input order (the last one shorter; none empty).

    ``need_scores``: every row must carry judge scores (the soft-label loss); a row without
    them is an error naming it. Unscored positives get score 1.0. A bad row (unreadable,
    a field missing or of the wrong type, no scores where needed) raises TrainingDataError
    naming it, after the chunks before it were yielded; with ``quarantine`` it is recorded
    there and left out instead.
    """
    if fmt not in _READERS:
        raise TrainingDataError(f"unknown format {fmt!r}; expected one of {sorted(_READERS)}")

    def make_row(rec: dict[str, Any], src: str, base: str) -> dict[str, Any]:
        return _tune_row(fmt, rec, src, base, need_scores)

    yield from _checked_chunks(
        rows_location(uri, fmt), make_row, TUNE_SCHEMA, S.QUERY_ID, chunk_rows, quarantine
    )


def _whole(chunks: Iterator[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables([schema.empty_table(), *chunks]).combine_chunks()


def read_tune_rows(uri: str, fmt: str, need_scores: bool = False) -> pa.Table:
    """All training rows under ``uri`` in format ``fmt``, as one ``TUNE_SCHEMA`` table (see
    :func:`iter_tune_chunks`; the jobs stream the chunks instead)."""
    return _whole(iter_tune_chunks(uri, fmt, need_scores), TUNE_SCHEMA)


def _text_row(rec: dict[str, Any], src: str, base: str) -> dict[str, Any]:
    """One stage-1 record as a ``DISTILL_SCHEMA`` row; TrainingDataError naming the field."""
    text = rec.get(S.TEXT)
    if not isinstance(text, str) or not text.strip():
        raise TrainingDataError(f"{src}: field '{S.TEXT}' is missing or empty")
    check_text(text, src, S.TEXT)
    id_ = record_id(rec.get(S.ID), src) or src
    return {S.ID: id_, S.TEXT: text, S.SOURCE: src}


def iter_text_chunks(
    uri: str, chunk_rows: int = ROWS_PER_CHUNK, quarantine: Quarantine | None = None
) -> Iterator[pa.Table]:
    """Stage-1 texts under ``uri`` (records with ``id`` and ``text``) as ``DISTILL_SCHEMA``
    tables of ``chunk_rows`` rows in input order; a bad record raises, or with
    ``quarantine`` is recorded there and left out."""
    yield from _checked_chunks(uri, _text_row, DISTILL_SCHEMA, S.ID, chunk_rows, quarantine)


def read_texts(uri: str) -> pa.Table:
    """Stage-1 texts under ``uri`` (records with ``id`` and ``text``) as ``DISTILL_SCHEMA``."""
    return _whole(iter_text_chunks(uri), DISTILL_SCHEMA)


class TeacherEmbeddings:
    """The teacher's embeddings of an embed-job output by ``id``, attached chunk by chunk."""

    def __init__(self, uri: str) -> None:
        table = storage.read_parquet(uri, columns=[S.ID, S.EMBEDDING])
        self.uri = uri
        self.by_id = dict(
            zip(table.column(S.ID).to_pylist(), table.column(S.EMBEDDING).to_pylist())
        )
        self.dims: set[int] = set()  # over every chunk attached so far

    def attach(self, texts: pa.Table, quarantine: Quarantine | None = None) -> pa.Table:
        """``texts`` with the ``embedding`` column; raises TrainingDataError naming the file
        and the first id without an embedding (with ``quarantine``: records it and leaves
        the row out), or the sizes when they differ."""
        vectors, keep = [], []
        for i, (id_, src) in enumerate(
            zip(texts.column(S.ID).to_pylist(), texts.column(S.SOURCE).to_pylist())
        ):
            vec = self.by_id.get(id_)
            if vec is None:
                error = TrainingDataError(
                    f"{src}: id {id_!r} has no teacher embedding in {self.uri}"
                )
                _keep_or_raise(quarantine, error, src, id_)
                continue
            vectors.append(vec)
            keep.append(i)
        if len(keep) < texts.num_rows:
            texts = texts.take(keep)
        self.dims.update(len(v) for v in vectors)
        if len(self.dims) > 1:
            raise TrainingDataError(
                f"{self.uri}: teacher embeddings of different sizes {sorted(self.dims)}"
            )
        column = pa.array(vectors, type=pa.list_(pa.float32()))
        return texts.append_column(pa.field(S.EMBEDDING, column.type), column)


def attach_teacher_embeddings(texts: pa.Table, uri: str) -> pa.Table:
    """Add the teacher's ``embedding`` column to ``texts`` by ``id`` from an embed-job output.

    Raises TrainingDataError naming the file and the first id without an embedding.
    """
    return TeacherEmbeddings(uri).attach(texts)


def iter_distill_chunks(
    uri: str,
    teacher: str | None = None,
    chunk_rows: int = ROWS_PER_CHUNK,
    quarantine: Quarantine | None = None,
) -> Iterator[pa.Table]:
    """Stage-1 texts under ``uri`` chunk by chunk (:func:`iter_text_chunks`), with the
    teacher's embeddings from the embed-job output ``teacher`` when given; ``quarantine``
    as there (a text without a teacher embedding too)."""
    embeddings: TeacherEmbeddings | None = None
    for chunk in iter_text_chunks(uri, chunk_rows, quarantine):
        if teacher and embeddings is None:
            embeddings = TeacherEmbeddings(teacher)
        if embeddings is not None:
            chunk = embeddings.attach(chunk, quarantine)
        if chunk.num_rows:
            yield chunk
