"""The live progress line of long stages: totals, rates, time left (no Ray)."""

from __future__ import annotations

from uniembed.observe.live import (
    Counts,
    Tally,
    Watch,
    closing_text,
    duration_text,
    estimated_total,
    progress_text,
)

JUDGE = Watch("mine/judge", "pairs", "judged", expected_items=64)


def test_the_total_is_final_once_every_expected_item_is_announced() -> None:
    assert estimated_total(Counts(total=1344, items=64, expected_items=64)) == (1344, True)
    # 16 of 64 queries announced with 21 pairs each: the rest at the same mean.
    assert estimated_total(Counts(total=336, items=16, expected_items=64)) == (1344, False)
    assert estimated_total(Counts(expected_items=64)) == (None, False)
    # Without an expected count the total is what was announced so far.
    assert estimated_total(Counts(total=100, items=5)) == (100, False)
    assert estimated_total(Counts()) == (None, False)
    # A total the driver knows outright (the rows to embed).
    assert estimated_total(Counts(known_total=3000)) == (3000, True)


def test_durations_read_as_a_person_says_them() -> None:
    assert [duration_text(s) for s in (0, 42.4, 95, 600, 4000)] == [
        "0s",
        "42s",
        "1m35s",
        "10m00s",
        "1h06m",
    ]


def test_the_line_gives_done_of_total_rate_and_time_left() -> None:
    c = Counts(
        done=640, total=1344, items=64, expected_items=64, first=100.0, first_done=21, last=200.0
    )
    line = progress_text(JUDGE, c, now=200.0)
    # (640 - 21) pairs in 100 s; 704 left at 6.19 pairs/s = 114 s.
    assert line == "[mine/judge] 640/1,344 pairs judged (48%), 6.2 pairs/s, about 1m54s left"
    # Time since the last call counts against the time left.
    assert progress_text(JUDGE, c, now=210.0).endswith("about 1m44s left")


def test_the_line_before_the_rate_is_known_and_without_a_total() -> None:
    assert progress_text(JUDGE, Counts(expected_items=64), now=0.0) == (
        "[mine/judge] 0 pairs judged, starting"
    )
    first = Counts(done=21, total=336, items=16, expected_items=64, first=5.0, first_done=21)
    first.last = 5.0
    assert progress_text(JUDGE, first, now=6.0) == "[mine/judge] 21/~1,344 pairs judged (2%)"
    rows = Watch("embed/embed", "rows", "embedded")
    c = Counts(done=512, first=0.0, first_done=256, last=8.0)
    assert progress_text(rows, c, now=9.0) == "[embed/embed] 512 rows embedded, 32.0 rows/s"


def test_the_closing_line() -> None:
    c = Counts(done=1344, first=20.0, first_done=21, last=116.0)
    assert closing_text(JUDGE, c, 130.0) == (
        "[mine/judge] 1,344 pairs judged in 2m10s, 13.8 pairs/s once started"
    )
    assert closing_text(JUDGE, Counts(done=21), 5.0) == "[mine/judge] 21 pairs judged in 5s"


def test_the_tally_counts_calls_and_hands_events_over_once() -> None:
    t = Tally()
    t.reset("mine/judge", expected_items=2, keep_events=True)
    t.add("mine/judge", done=0, total=42, items=2, at=1.0)
    t.add("mine/judge", done=21, total=0, items=0, at=3.0)
    t.add("mine/judge", done=21, total=0, items=0, at=5.0)
    t.add("other", done=7, total=0, items=0, at=5.0)  # not watched: kept apart
    snap = t.snapshot(["mine/judge"])["mine/judge"]
    assert (snap.done, snap.total, snap.items, snap.first, snap.first_done, snap.last) == (
        42,
        42,
        2,
        3.0,
        21,
        5.0,
    )
    assert [e[1] for e in snap.events] == [0, 21, 42]
    assert t.snapshot(["mine/judge"])["mine/judge"].events == []
    t.reset("mine/judge", expected_items=None, keep_events=False)
    t.add("mine/judge", done=5, total=0, items=0, at=9.0)
    again = t.snapshot(["mine/judge"])["mine/judge"]
    assert again.done == 5 and again.events == []
