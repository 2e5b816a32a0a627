"""The select stage runs one task per CPU of the cluster, not one per shard."""

from __future__ import annotations

import pytest

from uniembed.mining.pipeline import select_blocks


@pytest.mark.parametrize(
    ("shards", "cpus", "blocks"),
    [(94, 2.0, 2), (1, 16.0, 1), (0, 2.0, 1), (5, 16.0, 5), (313, 2.5, 2), (3, 0.5, 1)],
)
def test_select_blocks(shards: int, cpus: float, blocks: int) -> None:
    assert select_blocks(shards, cpus) == blocks
