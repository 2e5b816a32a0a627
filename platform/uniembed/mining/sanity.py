"""The judge's sanity verdict: pure rules, no Ray, no I/O (the mine job measures and stores).

A judge is checked before its scores decide anything: the mean per-query AUC of the
positive's score against its candidates' on the first queries must reach a floor; below
it the configured action decides whether the judge, the embedder or nobody scores the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from uniembed.data import schema as S

Action = Literal["judge", "fallback", "stop", "continue"]


@dataclass(frozen=True)
class SanityVerdict:
    """What the check measured and what the run does with the judge.

    ``action``: ``judge`` (passed: the judge decides), ``fallback`` (the embedder's
    similarities decide), ``stop`` (no selection), ``continue`` (failed, used anyway).
    ``auc`` is None when no calibration row could be judged (then the judge is trusted
    only if ``on_fail`` is ``continue``).
    """

    auc: float | None
    rows: int
    floor: float
    shards: tuple[str, ...]
    action: Action

    @property
    def passed(self) -> bool:
        """True when the judge reached the floor."""
        return self.auc is not None and self.auc >= self.floor

    @property
    def score_source(self) -> str:
        """Whose scores the selection uses."""
        return S.SCORE_JUDGE if self.action in ("judge", "continue") else S.SCORE_EMBEDDER

    def line(self, judge: str) -> str:
        """One plain sentence for the log, the report and the job's last line."""
        auc = "n/a" if self.auc is None else f"{self.auc:.3f}"
        measured = f"AUC {auc} on {self.rows} calibration queries, floor {self.floor:.2f}"
        if self.action == "judge":
            return f"judge {judge} passed its sanity check ({measured})"
        head = f"judge {judge} FAILED its sanity check ({measured})"
        return {
            "fallback": f"{head}: fell back to the embedder's similarities for the "
            "false-negative filter, the negatives and the soft labels",
            "stop": f"{head}: stopped before selection (sanity.on_fail=stop)",
            "continue": f"{head}: its scores were used anyway (sanity.on_fail=continue)",
        }[self.action]


class SanityRules(Protocol):
    """The settings :func:`decide` reads (the mine job's ``sanity`` section)."""

    auc_floor: float
    on_fail: Literal["fallback", "stop", "continue"]


def decide(auc: float | None, rows: int, shards: tuple[str, ...], s: SanityRules) -> SanityVerdict:
    """The verdict for a measured calibration AUC: ``judge`` at or above the floor, else
    ``s.on_fail``."""
    passed = auc is not None and auc >= s.auc_floor
    action: Action = "judge" if passed else s.on_fail
    return SanityVerdict(auc=auc, rows=rows, floor=s.auc_floor, shards=shards, action=action)


def calibration_shards(shard_names: list[str], shard_size: int, queries: int) -> list[str]:
    """The first shards holding at least ``queries`` queries (all of them if fewer)."""
    n = max(1, -(-queries // shard_size))
    return shard_names[:n]
