"""Reading and validating evaluation sets: one JSONL file is one task, its kind told by its
fields.

Three kinds are read (field names below are the files' own, not our item columns):

- ``candidates`` (MMEB-eval): ``qry_text``, ``qry_img_path``, ``tgt_text[]``,
  ``tgt_img_path[]``; the gold candidate is index 0.
- ``captions`` (Flickr30K / COCO style): ``image`` and ``captions`` (a list), or one
  ``caption`` per row; rows naming the same image are merged, so COCO's one-row-per-caption
  form works too.
- ``compositional`` (SugarCrepe style): ``image``, ``caption`` (true), ``negative_caption``
  (altered) and an optional ``category`` (default: the task name, as SugarCrepe ships one
  file per category).

Every row becomes a ``TaskRow`` whose ``refs`` point into the task's ``items`` (content
dicts with the item columns of ``uniembed.data.schema``, minus the id). A row that cannot
be read (bad bytes, invalid JSON, a field missing or of the wrong type) is left out of its
task and kept in ``EvalTask.unreadable`` as ``file:line: field: why``: the report counts it
among the task's excluded rows and names it, like a row whose image failed to embed, so a
score over fewer rows than the file holds always says so. A file with no readable row is
an error (``RecordError``) naming the first reasons.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.images import resolve_uri
from uniembed.data.record_files import file_records
from uniembed.data.records import RecordError, check_text, items_from_mmeb_eval

TaskKind = Literal["candidates", "captions", "compositional"]
TASK_KINDS: tuple[str, ...] = ("candidates", "captions", "compositional")

# Fields of the evaluation files (MMEB-eval, caption and compositional sets).
QRY_TEXT = "qry_text"
QRY_IMG_PATH = "qry_img_path"
TGT_TEXT = "tgt_text"
TGT_IMG_PATH = "tgt_img_path"
IMAGE = "image"
CAPTIONS = "captions"
CAPTION = "caption"
NEGATIVE_CAPTION = "negative_caption"
CATEGORY = "category"

logger = logging.getLogger(__name__)
EVAL_SUFFIX = ".jsonl"
EVAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")  # one task per file, whichever


@dataclass
class TaskRow:
    """One scored unit of a task: ``refs`` index the task's items.

    candidates: ``(query, gold, distractor, ...)``; captions: ``(image, caption, ...)``;
    compositional: ``(image, true caption, altered caption)`` with its ``category``.
    """

    source: str  # file:line of the row (the first line, for merged caption rows)
    refs: tuple[int, ...]
    category: str | None = None


@dataclass
class EvalTask:
    """One evaluation file, read and validated."""

    name: str
    uri: str
    kind: TaskKind
    items: list[dict[str, Any]] = field(default_factory=list)
    rows: list[TaskRow] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "file:line: field 'f': why"

    @property
    def n_references(self) -> int:
        """Item references over all rows (what embedding without dedupe would embed)."""
        return sum(len(r.refs) for r in self.rows)


def task_files(uris: Sequence[str]) -> list[str]:
    """The JSONL files named by ``uris`` (files, or folders whose ``*.jsonl`` are taken,
    sorted). Task names (file stems) must be unique across all of them."""
    if not uris:
        raise ValueError("data: give at least one --data URI (a JSONL file or a folder)")
    files: list[str] = []
    for uri in uris:
        uri = absolute(uri)
        if not storage.exists(uri):
            raise FileNotFoundError(f"data {uri} does not exist")
        if uri.endswith(EVAL_SUFFIXES):
            files.append(uri)
            continue
        listing = storage.list_input_files(uri)  # folder links not followed, loops named
        for skipped in listing.skipped:
            if skipped.folder or skipped.path.endswith(EVAL_SUFFIXES):
                logger.warning("data %s: left out %s", uri, skipped)
        found = [
            f
            for f in listing.files
            if f.endswith(EVAL_SUFFIXES) and not posixpath.basename(f).startswith(("_", "."))
        ]
        if not found:
            raise FileNotFoundError(f"data {uri} holds no .jsonl files (nor .jsonl.gz or .parquet)")
        files.extend(sorted(found))
    seen: dict[str, str] = {}
    for f in files:
        name = task_name(f)
        if name in seen:
            raise ValueError(f"data: task name {name!r} comes from both {seen[name]} and {f}")
        seen[name] = f
    return files


def absolute(uri: str) -> str:
    """Local paths made absolute (image paths resolve against the file's folder, and the
    embed pipeline would resolve relative ones against its own work folder)."""
    return uri if "://" in uri else os.path.abspath(uri)


def task_name(uri: str) -> str:
    """The file stem: ``.../MSCOCO_t2i.jsonl`` -> ``MSCOCO_t2i``."""
    name = posixpath.basename(uri)
    for suffix in EVAL_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def detect_kind(rec: Mapping[str, Any], source: str) -> TaskKind:
    """The task kind from a row's fields."""
    if TGT_TEXT in rec or TGT_IMG_PATH in rec:
        return "candidates"
    if NEGATIVE_CAPTION in rec:
        return "compositional"
    if CAPTIONS in rec or CAPTION in rec:
        return "captions"
    raise RecordError(
        source,
        TGT_TEXT,
        f"cannot tell the task kind from fields {sorted(rec)}: expected MMEB-eval "
        f"({QRY_TEXT}, {TGT_TEXT}, ...), captions ({IMAGE}, {CAPTIONS}) or compositional "
        f"({IMAGE}, {CAPTION}, {NEGATIVE_CAPTION})",
    )


def _content(text: str | None, image_uri: str | None) -> dict[str, Any]:
    return {S.TEXT: text, S.IMAGE: None, S.IMAGE_URI: image_uri, S.INSTRUCTION: None}


def _req_str(rec: Mapping[str, Any], key: str, source: str, path: bool = False) -> str:
    value = rec.get(key)
    if value is None:
        raise RecordError(source, key, "missing required field")
    if not isinstance(value, str) or not value.strip():
        raise RecordError(source, key, f"expected a non-empty string, got {value!r:.80}")
    return check_text(value, source, key, path)


class _Builder:
    """Collects a task's items and rows."""

    def __init__(self, task: EvalTask) -> None:
        self.task = task

    def add(self, content: dict[str, Any]) -> int:
        self.task.items.append(content)
        return len(self.task.items) - 1


def _candidates_row(b: _Builder, rec: Mapping[str, Any], src: str, base: str) -> None:
    items = items_from_mmeb_eval(rec, src, base)
    if len(items) < 3:
        raise RecordError(src, TGT_TEXT, "has only the gold: a task needs at least one distractor")
    for i, it in enumerate(items):  # the whole row is checked before any item is kept
        if not it[S.TEXT] and not it[S.IMAGE_URI]:
            where = QRY_TEXT if i == 0 else f"{TGT_TEXT}[{i - 1}]"
            raise RecordError(src, where, "empty: neither text nor image")
    refs = [b.add(_content(it[S.TEXT], it[S.IMAGE_URI])) for it in items]
    b.task.rows.append(TaskRow(src, tuple(refs)))


def _compositional_row(b: _Builder, rec: Mapping[str, Any], src: str, base: str) -> None:
    image = resolve_uri(_req_str(rec, IMAGE, src, path=True), base)
    true, altered = _req_str(rec, CAPTION, src), _req_str(rec, NEGATIVE_CAPTION, src)
    category = rec.get(CATEGORY, b.task.name)
    if not isinstance(category, str) or not category:
        raise RecordError(src, CATEGORY, f"expected a non-empty string, got {category!r:.80}")
    check_text(category, src, CATEGORY)
    refs = (
        b.add(_content(None, image)),
        b.add(_content(true, None)),
        b.add(_content(altered, None)),
    )
    b.task.rows.append(TaskRow(src, refs, category))


def _caption_texts(rec: Mapping[str, Any], src: str) -> list[str]:
    if CAPTIONS in rec:
        caps = rec[CAPTIONS]
        if isinstance(caps, str) or not isinstance(caps, list):
            raise RecordError(src, CAPTIONS, f"expected a list of strings, got {caps!r:.80}")
        if not caps:
            raise RecordError(src, CAPTIONS, "empty caption list")
        for i, c in enumerate(caps):
            if not isinstance(c, str) or not c.strip():
                raise RecordError(
                    src, f"{CAPTIONS}[{i}]", f"expected a non-empty string: {c!r:.80}"
                )
            check_text(c, src, f"{CAPTIONS}[{i}]")
        return list(caps)
    if CAPTION in rec:
        return [_req_str(rec, CAPTION, src)]
    raise RecordError(src, CAPTIONS, "missing required field")


REASONS_SHOWN = 3  # reasons named when no row of a file can be read


def _unreadable_file(uri: str, rows: int, reasons: list[str]) -> RecordError:
    """The error of a file none of whose ``rows`` could be read, naming the first reasons."""
    shown = "; ".join(reasons[:REASONS_SHOWN])
    return RecordError(uri, None, f"no readable row in {rows} ({shown})")


def _kind(uri: str, records: list[tuple[Any, str]]) -> TaskKind:
    """The kind told by the first readable record; RecordError naming the first reasons
    for a file with none."""
    errors: list[str] = []
    for rec, src in records:
        try:
            if isinstance(rec, RecordError):
                raise rec
            return detect_kind(rec, src)
        except RecordError as e:
            errors.append(str(e))
    raise _unreadable_file(uri, len(records), errors)


def read_task(uri: str) -> EvalTask:
    """Read and validate one evaluation file (local or s3://); unreadable rows are kept in
    ``unreadable`` (see the module's docstring)."""
    uri = absolute(uri)
    base = uri.rsplit("/", 1)[0]
    records = list(file_records(uri, on_error="quarantine"))
    if not records:
        raise RecordError(uri, "(file)", "no rows")
    task = EvalTask(task_name(uri), uri, _kind(uri, records))
    b = _Builder(task)
    readable = 0
    # image URI -> (first source, caption texts), in first-seen order
    by_image: dict[str, tuple[str, list[str]]] = {}
    read_row = _candidates_row if task.kind == "candidates" else _compositional_row
    for rec, src in records:
        try:
            if isinstance(rec, RecordError):
                raise rec
            if task.kind != "captions":
                read_row(b, rec, src, base)
            else:
                image = resolve_uri(_req_str(rec, IMAGE, src, path=True), base)
                captions = _caption_texts(rec, src)  # before the image is kept
                by_image.setdefault(image, (src, []))[1].extend(captions)
            readable += 1
        except RecordError as e:
            task.unreadable.append(str(e))
    if not readable:
        raise _unreadable_file(uri, len(records), task.unreadable)
    for image, (src, caps) in by_image.items():
        refs = [b.add(_content(None, image))] + [b.add(_content(c, None)) for c in caps]
        task.rows.append(TaskRow(src, tuple(refs)))
    if task.kind == "captions" and len(task.rows) < 2:
        raise RecordError(uri, IMAGE, "caption retrieval needs at least two images")
    return task


def read_tasks(uris: Sequence[str]) -> list[EvalTask]:
    """Every task named by ``uris`` (see ``task_files``), read and validated."""
    return [read_task(f) for f in task_files(uris)]
