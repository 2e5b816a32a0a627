"""A loaded search index: FAISS positions -> ids -> documents, searched in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from uniembed.index import IdMap, build_index, load_index, search
from uniembed.serving.artifacts import ArtifactError, check_index
from uniembed.serving.config import RetrieverSection
from uniembed.serving.documents import Document, load_documents


@dataclass(frozen=True)
class Hit:
    """A search result: the document id, its cosine score and the document when known."""

    id: str
    score: float
    text: str | None = None
    image_uri: str | None = None


class SearchIndex:
    """A FAISS index with its id map and (optionally) the documents behind the ids."""

    def __init__(self, index: object, ids: IdMap, documents: Sequence[Document] = ()) -> None:
        self.index = index
        self.ids = ids
        self.documents = {d.id: d for d in documents}
        self.dim = int(index.d)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.ids)

    def search_many(self, queries: np.ndarray, ks: Sequence[int]) -> list[list[Hit]]:
        """Top-``ks[i]`` hits of each query row of ``queries`` (q, dim), in one search."""
        k_max = min(max(ks), len(self.ids))
        scores, positions = search(self.index, queries, k_max)
        out = []
        for row, k in enumerate(ks):
            hits = []
            for score, id_ in zip(scores[row][:k], self.ids.lookup(positions[row][:k])):
                if id_ is None:
                    continue
                doc = self.documents.get(id_)
                hits.append(
                    Hit(
                        id_, float(score), doc.text if doc else None, doc.image_uri if doc else None
                    )
                )
            out.append(hits)
        return out


class IndexNotReadyError(RuntimeError):
    """The index is still being loaded or built (a 503 for the client)."""


def index_info(index: SearchIndex, source: str) -> dict[str, object]:
    """What the retriever reports of a loaded index."""
    return {"ready": True, "count": len(index), "dim": index.dim, "source": source, "error": None}


def load_search_index(section: RetrieverSection, dim: int | None) -> SearchIndex:
    """The configured index (and documents); checks its width against ``dim`` (the
    embedder's) when given."""
    assert section.index is not None
    check_index(section.index, "retriever.index")
    try:
        index, ids = load_index(section.index)
    except Exception as e:  # noqa: BLE001 - any failure is a start-up error naming the field
        raise ArtifactError(f"retriever.index: cannot load {section.index}: {e}") from e
    if dim is not None and index.d != dim:
        raise ArtifactError(
            f"retriever.index: {section.index} holds {index.d}-d vectors but the embedder "
            f"makes {dim}-d ones (was the index built with another model?)"
        )
    docs: list[Document] = []
    if section.documents:
        try:
            docs = load_documents(section.documents)
        except Exception as e:  # noqa: BLE001
            raise ArtifactError(f"retriever.documents: {e}") from e
    return SearchIndex(index, ids, docs)


def demo_documents(section: RetrieverSection) -> list[Document]:
    """The documents of the start-up index: ``section.documents`` or the demo WordNet corpus."""
    from uniembed.data.demo import WORDNET_CORPUS, demo_path

    return load_documents(section.documents or demo_path(WORDNET_CORPUS), limit=section.demo_limit)


def index_over(docs: Sequence[Document], matrix: np.ndarray) -> SearchIndex:
    """An exact (flat) index over ``matrix`` (len(docs), dim), row i being ``docs[i]``."""
    return SearchIndex(build_index(matrix, "flat"), IdMap.from_ids(d.id for d in docs), docs)
