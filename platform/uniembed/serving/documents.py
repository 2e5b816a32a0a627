"""The documents behind an index's ids, and the demo index built at start-up.

The index stores ids only; search results show each hit's text and image URI, read from
the items file(s) the embed job embedded (``id``, ``text``, ``image_uri`` columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from uniembed.data import schema as S
from uniembed.models import EmbedInput


@dataclass(frozen=True)
class Document:
    """A document of the index: its text and/or image URI."""

    id: str
    text: str | None = None
    image_uri: str | None = None


def load_documents(uri: str, limit: int | None = None) -> list[Document]:
    """Documents of an items file or folder (JSONL/JSON/Parquet, local or s3://).

    Image paths are resolved against the file's folder. A record that cannot be read is an
    error naming its source: the service would otherwise return hits it cannot show.
    """
    from uniembed.data.read import read_table

    table = read_table(uri, "items")
    rows = table.select([S.ID, S.TEXT, S.IMAGE_URI, S.SOURCE, S.ERROR]).to_pylist()
    docs = []
    for row in rows[:limit] if limit else rows:
        if row[S.ERROR]:
            raise ValueError(f"documents {uri}: {row[S.SOURCE]}: {row[S.ERROR]}")
        docs.append(Document(row[S.ID], row[S.TEXT], row[S.IMAGE_URI]))
    return docs


def embed_inputs(docs: Sequence[Document]) -> list[EmbedInput]:
    """Text-only inputs for documents (the demo corpus is text)."""
    return [EmbedInput(text=d.text) for d in docs]
