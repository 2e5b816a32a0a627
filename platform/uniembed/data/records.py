"""Turn raw records of each supported input format into item rows (see ``schema``).

Pure functions, no Ray: the pipelines call them per batch. A record that cannot be turned
into an item becomes a row whose ``error`` names the record, the field and the reason, so
the job can quarantine it instead of dropping it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from uniembed.data import schema as S
from uniembed.data.images import resolve_uri

Format = Literal["items", "mmeb_train", "mmeb_eval", "unime_v2"]
FORMATS: tuple[str, ...] = ("items", "mmeb_train", "mmeb_eval", "unime_v2")

# Image placeholders as written in public data sets; the embedder's family places its own
# image token, so these are removed from the text.
_IMAGE_PLACEHOLDER = re.compile(r"<\|image_\d+\|>|<image>")


class RecordError(ValueError):
    """A record is malformed; ``str(e)`` names the source (file:line), the field and why.

    ``field`` is None when the record could not be read at all (bad bytes, invalid JSON).
    """

    def __init__(self, source: str, field: str | None, reason: str) -> None:
        where = f"{source}: field '{field}'" if field is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.field = field
        self.reason = reason


def strip_image_placeholders(text: str | None) -> str | None:
    """Remove ``<|image_1|>``/``<image>`` placeholders; None or empty stays None."""
    if text is None:
        return None
    cleaned = _IMAGE_PLACEHOLDER.sub("", text).strip()
    return cleaned or None


def printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes: safe to store, print
    and write as UTF-8 (for ids and reasons of quarantined rows)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_text(value: str, source: str, field: str, path: bool = False) -> str:
    """``value``, or RecordError naming ``field`` when it is not valid Unicode (a lone
    surrogate such as JSON's ``"\\ud800"``, which no UTF-8 writer or tokenizer accepts) or,
    for a ``path``, holds a NUL character (no file system takes one)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RecordError(
            source,
            field,
            f"not valid Unicode: lone surrogate U+{ord(value[e.start]):04X} at character {e.start}",
        ) from None
    if path and "\x00" in value:
        raise RecordError(source, field, f"a path with a NUL character: {value!r}")
    return value


def _opt_str(rec: Mapping[str, Any], key: str, source: str, path: bool = False) -> str | None:
    value = rec.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(source, key, f"expected a string, got {type(value).__name__}")
    return check_text(value, source, key, path)


def _opt_path(rec: Mapping[str, Any], key: str, source: str) -> str | None:
    return _opt_str(rec, key, source, path=True)


def _list_entry(value: Any, source: str, field: str, path: bool = False) -> str | None:
    """An entry of a list of texts or image paths: a string, or None/"" for none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(source, field, f"expected a string, got {type(value).__name__}")
    return check_text(value, source, field, path)


def record_id(value: Any, source: str, field: str = S.ID) -> str | None:
    """A record's id as a string: a string or an integer (a JSON number without fraction);
    None when missing or empty. RecordError naming ``field`` for any other type (a float,
    a bool, a list, an object) or text that is not valid Unicode."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(
            source, field, f"expected a string or an integer, got {type(value).__name__}"
        )
    return check_text(str(value), source, field)


# An instruction is a task's short prompt, never cut (a cut one would ask something else):
# a longer one is a bad record, not a prompt of this many characters for every embedding.
MAX_INSTRUCTION_CHARS = 4096


def _instruction(rec: Mapping[str, Any], source: str) -> str | None:
    value = _opt_str(rec, S.INSTRUCTION, source)
    if value is not None and len(value) > MAX_INSTRUCTION_CHARS:
        raise RecordError(
            source,
            S.INSTRUCTION,
            f"{len(value)} characters, over the limit of {MAX_INSTRUCTION_CHARS} "
            "(instructions are never cut)",
        )
    return value


def _item(
    id_: str,
    text: str | None,
    image_uri: str | None,
    instruction: str | None,
    source: str,
    base: str | None,
    image: bytes | None = None,
) -> dict[str, Any]:
    return {
        S.ID: id_,
        S.TEXT: text,
        S.IMAGE: image,
        S.IMAGE_URI: resolve_uri(image_uri, base) if image_uri else None,
        S.INSTRUCTION: instruction,
        S.SOURCE: source,
    }


def items_from_item_record(
    rec: Mapping[str, Any], source: str, base: str | None
) -> list[dict[str, Any]]:
    """Our own item format: ``id`` (required), ``text``, ``image`` (bytes, or a path/URI
    string), ``image_uri``/``image_path``, ``instruction``."""
    id_ = record_id(rec.get(S.ID), source)
    if id_ is None:
        raise RecordError(source, S.ID, "missing required field")
    image = rec.get(S.IMAGE)
    image_bytes = None
    image_uri, image_path = (
        _opt_path(rec, S.IMAGE_URI, source),
        _opt_path(rec, "image_path", source),
    )
    image_uri = image_uri or image_path  # both checked: a bad one is never passed over
    if isinstance(image, (bytes, bytearray)):
        image_bytes = bytes(image) or None
    elif isinstance(image, str) and image:
        image_uri = image_uri or image
        check_text(image, source, S.IMAGE, path=True)
    elif image is not None and image != "":
        raise RecordError(source, S.IMAGE, f"expected bytes or a path, got {type(image).__name__}")
    return [
        _item(
            id_,
            _opt_str(rec, S.TEXT, source),
            image_uri,
            _instruction(rec, source),
            source,
            base,
            image_bytes,
        )
    ]


def _str_list(rec: Mapping[str, Any], key: str, source: str, path: bool) -> list[str | None] | None:
    values = rec.get(key)
    if values is None:
        return None
    if not isinstance(values, (list, tuple)):
        raise RecordError(source, key, f"expected a list, got {type(values).__name__}")
    return [_list_entry(v, source, f"{key}[{i}]", path) for i, v in enumerate(values)]


def _check_lists(rec: Mapping[str, Any], source: str) -> tuple[list[str | None], list[str | None]]:
    texts = _str_list(rec, "tgt_text", source, path=False)
    images = _str_list(rec, "tgt_img_path", source, path=True)
    if texts is None and images is None:
        raise RecordError(source, "tgt_text", "missing required field")
    texts = texts if texts is not None else [None] * len(images or [])
    images = images if images is not None else [None] * len(texts)
    if len(texts) == 0:
        raise RecordError(source, "tgt_text", "empty candidate list")
    if len(texts) != len(images):
        raise RecordError(
            source,
            "tgt_img_path",
            f"has {len(images)} entries but tgt_text has {len(texts)}",
        )
    return texts, images


def items_from_mmeb_eval(
    rec: Mapping[str, Any], source: str, base: str | None
) -> list[dict[str, Any]]:
    """MMEB-eval row -> the query ``<source>#qry`` and candidates ``<source>#tgt<i>``."""
    if "qry_text" not in rec and "qry_img_path" not in rec:
        raise RecordError(source, "qry_text", "missing required field")
    texts, images = _check_lists(rec, source)
    out = [
        _item(
            f"{source}#qry",
            strip_image_placeholders(_opt_str(rec, "qry_text", source)),
            _opt_path(rec, "qry_img_path", source),
            None,
            source,
            base,
        )
    ]
    for i, (t, im) in enumerate(zip(texts, images, strict=True)):
        out.append(
            _item(
                f"{source}#tgt{i}",
                strip_image_placeholders(t or None),
                im or None,
                None,
                source,
                base,
            )
        )
    return out


@dataclass(frozen=True)
class Side:
    """One side of a published training pair: its text (image placeholders removed) and
    its image path as written (relative paths resolve against the file's folder)."""

    text: str | None
    image: str | None


@dataclass(frozen=True)
class PublishedRecord:
    """A record of a published training format (UniME-V2, MMEB-train), parsed once.

    Two views are taken of it: the items that embed and mine read
    (:func:`items_from_unime_v2`, :func:`items_from_mmeb_train`) and the training row that
    tune reads (``uniembed.data.training_rows``).
    """

    id: str | None  # the record's own ``id``, when it has one
    query: Side
    pos: Side
    negatives: tuple[Side, ...] = ()
    pos_score: float | None = None
    neg_scores: list[float | None] | None = None


def _side(rec: Mapping[str, Any], text_key: str, image_key: str, source: str) -> Side:
    if text_key not in rec and image_key not in rec:
        raise RecordError(source, text_key, "missing required field")
    text = strip_image_placeholders(_opt_str(rec, text_key, source))
    return Side(text, _opt_path(rec, image_key, source))


def _record_id(rec: Mapping[str, Any], source: str) -> str | None:
    return record_id(rec.get(S.ID), source)


def parse_mmeb_train(rec: Mapping[str, Any], source: str) -> PublishedRecord:
    """An MMEB-train row: ``qry, qry_image_path, pos_text, pos_image_path`` and an optional
    negative ``neg_text, neg_image_path``; no scores."""
    neg = Side(
        strip_image_placeholders(_opt_str(rec, "neg_text", source)),
        _opt_path(rec, "neg_image_path", source),
    )
    return PublishedRecord(
        _record_id(rec, source),
        _side(rec, "qry", "qry_image_path", source),
        _side(rec, "pos_text", "pos_image_path", source),
        (neg,) if neg.text or neg.image else (),
    )


def _pos_score(rec: Mapping[str, Any], source: str) -> float | None:
    score = rec.get("query_pos_scores")
    if isinstance(score, list):  # some releases store the single score in a list
        score = score[0] if score else None
    return _score(score, source, "query_pos_scores")


def _score(value: Any, source: str, field: str) -> float | None:
    """A judge score: a finite number, or None; RecordError naming ``field`` otherwise
    (a string, a bool, NaN, an infinity, an integer too large for a float)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(source, field, f"expected a number, got {printable(repr(value))}")
    try:
        score = float(value)
    except OverflowError:
        score = math.inf
    if not math.isfinite(score):
        raise RecordError(source, field, f"expected a finite number, got {value!r:.40}")
    return score


def parse_unime_v2(rec: Mapping[str, Any], source: str) -> PublishedRecord:
    """A UniME-V2 scored row: ``query_text, query_image, pos_text, pos_image,
    query_pos_scores`` (a number, or a list of one), ``hard_negatives [[text, image]...]``
    and ``hard_negatives_scores`` (one per hard negative)."""
    negs = rec.get("hard_negatives")
    negs = [] if negs is None else negs
    if not isinstance(negs, (list, tuple)):
        raise RecordError(source, "hard_negatives", f"expected a list, got {type(negs).__name__}")
    scores = rec.get("hard_negatives_scores")
    if scores is not None and not isinstance(scores, (list, tuple)):
        raise RecordError(
            source, "hard_negatives_scores", f"expected a list, got {type(scores).__name__}"
        )
    if scores is not None and len(scores) != len(negs):
        raise RecordError(
            source, "hard_negatives_scores", f"has {len(scores)} scores for {len(negs)} negatives"
        )
    if scores is not None:
        scores = [_score(v, source, f"hard_negatives_scores[{i}]") for i, v in enumerate(scores)]
    negatives = []
    for i, neg in enumerate(negs):
        pair = isinstance(neg, (list, tuple)) and len(neg) == 2
        if not pair or not all(v is None or isinstance(v, str) for v in neg):
            raise RecordError(source, f"hard_negatives[{i}]", "expected [text, image]")
        text = _list_entry(neg[0], source, f"hard_negatives[{i}][0]")
        image = _list_entry(neg[1], source, f"hard_negatives[{i}][1]", path=True)
        negatives.append(Side(strip_image_placeholders(text), image))
    return PublishedRecord(
        _record_id(rec, source),
        _side(rec, "query_text", "query_image", source),
        _side(rec, "pos_text", "pos_image", source),
        tuple(negatives),
        _pos_score(rec, source),
        scores,
    )


def _published_items(
    parsed: PublishedRecord, source: str, base: str | None, numbered_negatives: bool
) -> list[dict[str, Any]]:
    sides = [("qry", parsed.query), ("pos", parsed.pos)]
    sides += [
        (f"neg{i}" if numbered_negatives else "neg", neg) for i, neg in enumerate(parsed.negatives)
    ]
    return [_item(f"{source}#{k}", s.text, s.image, None, source, base) for k, s in sides]


def items_from_mmeb_train(
    rec: Mapping[str, Any], source: str, base: str | None
) -> list[dict[str, Any]]:
    """MMEB-train row -> query item ``<source>#qry`` and positive ``<source>#pos``
    (and ``#neg`` when the row has a negative)."""
    return _published_items(parse_mmeb_train(rec, source), source, base, numbered_negatives=False)


def items_from_unime_v2(
    rec: Mapping[str, Any], source: str, base: str | None
) -> list[dict[str, Any]]:
    """UniME-V2 scored row -> query, positive and each hard negative ``#neg<i>``."""
    return _published_items(parse_unime_v2(rec, source), source, base, numbered_negatives=True)


CONVERTERS: dict[str, Callable[[Mapping[str, Any], str, str | None], list[dict[str, Any]]]] = {
    "items": items_from_item_record,
    "mmeb_train": items_from_mmeb_train,
    "mmeb_eval": items_from_mmeb_eval,
    "unime_v2": items_from_unime_v2,
}


def error_item(source: str, reason: str, id_: str | None = None) -> dict[str, Any]:
    """A placeholder row for a record that could not be converted; its id, source and
    reason are made :func:`printable` (the bad text may be in any of them)."""
    row = _item(printable(id_ or source), None, None, None, printable(source), None)
    row[S.ERROR] = printable(reason)
    return row


def check_unicode(row: Mapping[str, Any], source: str) -> None:
    """RecordError naming the field of ``row`` whose text is not valid Unicode (a lone
    surrogate such as JSON's ``"\\ud800"``, which no UTF-8 writer or tokenizer accepts)."""
    for key in (S.ID, S.TEXT, S.IMAGE_URI, S.INSTRUCTION):
        value = row.get(key)
        if isinstance(value, str):
            check_text(value, source, key, path=key == S.IMAGE_URI)


def convert_records(
    records: Iterator[tuple[Mapping[str, Any] | Exception, str]], fmt: str, base: str | None
) -> Iterator[dict[str, Any]]:
    """Convert ``(record, source)`` pairs; failures yield error rows instead of raising."""
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown input format {fmt!r}; expected one of {list(CONVERTERS)}")
    convert = CONVERTERS[fmt]
    for rec, source in records:
        if isinstance(rec, Exception):
            yield error_item(source, str(rec))
            continue
        try:
            rows = convert(rec, source, base)
            for row in rows:
                check_unicode(row, source)
        except RecordError as e:
            yield error_item(source, str(e), _usable_id(rec, source))
            continue
        for row in rows:
            row[S.ERROR] = None
            yield row


def _usable_id(rec: Any, source: str) -> str | None:
    """The record's id when it is a valid one, for naming its quarantined row; None (the
    row then goes by its source) when the id itself is the bad value."""
    try:
        return record_id(rec.get(S.ID), source) if isinstance(rec, Mapping) else None
    except RecordError:
        return None
