"""Embed each distinct item once: the items table handed to the embed pipeline.

MMEB sets repeat candidates across queries (a classification task offers the same 1,000
class names to every query), so embedding by reference wastes most of the work. Items are
the same when their content is: text, image (bytes by hash, else the resolved URI) and
instruction. Two URIs naming equal files are not merged; reading every image in the driver
to hash it would cost more than it saves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from uniembed.data import schema as S
from uniembed.evaluation.report import DedupeStats
from uniembed.evaluation.tasks import EvalTask

ContentKey = tuple[str | None, str | None, str | None, str | None]


def content_key(item: Mapping[str, Any]) -> ContentKey:
    """What makes two items embed the same: (text, instruction, image hash, image URI)."""
    image = item.get(S.IMAGE)
    digest = hashlib.sha256(image).hexdigest() if image else None
    # Bytes win over a URI in the embed worker, so with bytes the URI is irrelevant.
    uri = None if digest else item.get(S.IMAGE_URI)
    return (item.get(S.TEXT), item.get(S.INSTRUCTION), digest, uri)


@dataclass
class EmbedPlan:
    """The items to embed and, per task, the embedded id of each of its item indices."""

    table: pa.Table  # schema.ITEM_SCHEMA, one row per item to embed
    ids: list[list[str]]  # ids[t][i]: id of item i of task t
    stats: DedupeStats

    def __post_init__(self) -> None:
        if len(set(self.table[S.ID].to_pylist())) != len(self.table):
            raise ValueError("plan: item ids must be unique")


def plan_items(tasks: Sequence[EvalTask], dedupe: bool = True) -> EmbedPlan:
    """One item per distinct content across all tasks (``dedupe``), else one per reference.

    Ids are opaque (``i<n>``); the plan maps every task's item index to one.
    """
    if not tasks:
        raise ValueError("tasks: nothing to evaluate")
    rows: list[dict[str, Any]] = []
    by_key: dict[ContentKey, str] = {}
    ids: list[list[str]] = []
    for task in tasks:
        task_ids = []
        for item in task.items:
            key = content_key(item)
            rid = by_key.get(key) if dedupe else None
            if rid is None:
                rid = f"i{len(rows)}"
                rows.append({S.ID: rid, **{c: item.get(c) for c in S.ITEM_SCHEMA.names[1:]}})
                if dedupe:
                    by_key[key] = rid
            task_ids.append(rid)
        ids.append(task_ids)
    n_total = sum(len(t) for t in ids)
    table = pa.Table.from_pylist(rows, schema=S.ITEM_SCHEMA)
    return EmbedPlan(table, ids, DedupeStats(n_total=n_total, n_unique=len(rows)))
