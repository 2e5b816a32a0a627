"""The UniME-V2 scored-JSON layout, from our mined rows (``schema.MINED_SCHEMA``).

One JSON object per query, as the published UniME-V2 training data stores it::

    {"query_text": ..., "query_image": ..., "pos_text": ..., "pos_image": ...,
     "query_pos_scores": 0.93,
     "hard_negatives": [[text, image], ...], "hard_negatives_scores": [0.41, ...]}

Images are URIs (or null); ``uniembed.data.records.items_from_unime_v2`` reads this back.
The query's task instruction, when it has one, leads its text (the layout has no field for
it), separated by a newline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from uniembed.data import schema as S


def unime_v2_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """One mined row (MINED_SCHEMA names) as a UniME-V2 scored-JSON object."""
    negs = row[S.NEG_TEXTS] or []
    images = row[S.NEG_IMAGES] or [None] * len(negs)
    if len(images) != len(negs):
        raise ValueError(
            f"query {row[S.QUERY_ID]}: {len(images)} negative images for {len(negs)} negatives"
        )
    text = "\n".join(p for p in (row[S.QUERY_INSTRUCTION], row[S.QUERY_TEXT]) if p) or None
    return {
        S.QUERY_TEXT: text,
        S.QUERY_IMAGE: row[S.QUERY_IMAGE],
        S.POS_TEXT: row[S.POS_TEXT],
        S.POS_IMAGE: row[S.POS_IMAGE],
        S.QUERY_POS_SCORES: row[S.POS_SCORE],
        S.HARD_NEGATIVES: [[t, im] for t, im in zip(negs, images, strict=True)],
        S.HARD_NEGATIVES_SCORES: list(row[S.NEG_SCORES] or []),
    }


def unime_v2_json(rows: Iterable[Mapping[str, Any]]) -> str:
    """A JSON array of :func:`unime_v2_record` objects, one per line for readable diffs."""
    body = ",\n".join(json.dumps(unime_v2_record(r), ensure_ascii=False) for r in rows)
    return f"[\n{body}\n]\n" if body else "[]\n"
