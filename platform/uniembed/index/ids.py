"""Row position <-> string id mapping for FAISS indexes, which store positions only."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class IdMap:
    """An order-preserving list of unique string ids: ``ids[i]`` is index position ``i``.

    Build it from the same rows, in the same order, as the embeddings given to
    :func:`~uniembed.index.faiss_index.build_index`.
    """

    ids: tuple[str, ...]
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = tuple(self.ids)
        positions: dict[str, int] = {}
        for i, id_ in enumerate(ids):
            if not isinstance(id_, str):
                raise ValueError(f"ids[{i}]: expected a string id, got {type(id_).__name__}")
            if id_ in positions:
                raise ValueError(f"ids[{i}]: id {id_!r} repeats ids[{positions[id_]}]")
            positions[id_] = i
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "_positions", positions)

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> IdMap:
        """An IdMap over ``ids`` in the given order; repeated or non-string ids are errors."""
        return cls(tuple(ids))

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._positions

    def position(self, id_: str) -> int:
        """The index position of ``id_``; KeyError naming it when absent."""
        try:
            return self._positions[id_]
        except KeyError:
            raise KeyError(f"id {id_!r} is not in the index's id map") from None

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Index positions (len(ids),) int64 of ``ids``."""
        return np.fromiter((self.position(i) for i in ids), dtype=np.int64, count=len(ids))

    def lookup(self, positions: Sequence[int] | np.ndarray) -> list[str | None]:
        """Ids at ``positions``; FAISS's -1 ("no result") maps to None."""
        n = len(self.ids)
        out: list[str | None] = []
        for p in np.asarray(positions, dtype=np.int64).ravel().tolist():
            if p < 0:
                out.append(None)
            elif p >= n:
                raise IndexError(f"position {p} is out of range for an id map of {n} ids")
            else:
                out.append(self.ids[p])
        return out

    def to_bytes(self) -> bytes:
        """UTF-8 JSON array of the ids, in order."""
        return json.dumps(list(self.ids), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> IdMap:
        """Inverse of :meth:`to_bytes`."""
        ids = json.loads(data.decode("utf-8"))
        if not isinstance(ids, list):
            raise ValueError("id map: expected a JSON array of string ids")
        return cls(tuple(ids))
