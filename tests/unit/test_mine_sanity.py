"""The judge's sanity verdict: the rules that decide whether a judge's scores are used."""

from __future__ import annotations

import pytest

from uniembed.data import schema as S
from uniembed.mining.config import SanitySection
from uniembed.mining.sanity import calibration_shards, decide

SHARDS = ("shard-000000",)


@pytest.mark.parametrize(
    ("auc", "on_fail", "action", "source"),
    [
        (0.91, "fallback", "judge", S.SCORE_JUDGE),  # passed: the judge decides
        (0.60, "stop", "judge", S.SCORE_JUDGE),  # exactly at the floor passes
        (0.47, "fallback", "fallback", S.SCORE_EMBEDDER),
        (0.47, "stop", "stop", S.SCORE_EMBEDDER),
        (0.47, "continue", "continue", S.SCORE_JUDGE),
        (None, "fallback", "fallback", S.SCORE_EMBEDDER),  # nothing could be judged
    ],
)
def test_decide(auc: float | None, on_fail: str, action: str, source: str) -> None:
    v = decide(auc, 16, SHARDS, SanitySection(auc_floor=0.6, on_fail=on_fail))
    assert (v.action, v.score_source) == (action, source)
    assert v.passed == (auc is not None and auc >= 0.6)


def test_verdict_lines_say_what_decided() -> None:
    floor = SanitySection(auc_floor=0.6)
    ok = decide(0.912, 64, SHARDS, floor).line("j")
    assert ok == "judge j passed its sanity check (AUC 0.912 on 64 calibration queries, floor 0.60)"
    low = decide(0.472, 64, SHARDS, floor).line("j")
    assert "FAILED" in low and "AUC 0.472" in low and "embedder's similarities" in low
    stop = decide(0.472, 64, SHARDS, SanitySection(on_fail="stop")).line("j")
    assert "stopped before selection" in stop
    used = decide(0.472, 64, SHARDS, SanitySection(on_fail="continue")).line("j")
    assert "used anyway" in used


def test_calibration_shards_cover_the_asked_queries() -> None:
    names = [f"s{i}" for i in range(5)]
    assert calibration_shards(names, 16, 64) == ["s0", "s1", "s2", "s3"]
    assert calibration_shards(names, 16, 65) == names
    assert calibration_shards(names, 100, 1) == ["s0"]


def test_sanity_section_checks_itself() -> None:
    with pytest.raises(ValueError, match="calibration_queries"):
        SanitySection(calibration_queries=0)
    with pytest.raises(ValueError, match="auc_floor"):
        SanitySection(auc_floor=1.5)
