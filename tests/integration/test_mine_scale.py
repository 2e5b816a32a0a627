"""The mine job's pool is held once per node: in Ray's object store, not in the driver and
not copied into the retrieval actor.

The pool (embeddings written as an embed output, items as the staged pool) goes through
``share_pool`` and a real ``RetrievalStage`` actor on the session's 2-CPU Ray cluster. A copy
of the pool shows as private memory (``RssAnon``: shared object-store pages do not count)
growing by the pool's bytes (a first search adds a fixed ~30 MB of buffers, so the pool is
92 MB); the actor's index must also be a view of the object-store buffer. The probe itself
is checked: an actor told to copy the pool grows by the pool's bytes more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from uniembed import storage
from uniembed.data import schema as S
from uniembed.mining.config import RetrievalSection
from uniembed.mining.inputs import POOL_SCHEMA

DIM = 384


def anon_bytes() -> int:
    """This process's private resident memory (RssAnon), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def write_pool(folder: Path, rows: int) -> tuple[str, str, np.ndarray]:
    """An embed output and a staged pool of ``rows`` unit vectors; returns both URIs and
    the vectors."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(rows)]
    emb = folder / "embeddings"
    step = 20_000
    for part, start in enumerate(range(0, rows, step)):
        chunk = x[start : start + step]
        table = pa.table(
            {
                S.ID: ids[start : start + step],
                S.EMBEDDING: pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel()), DIM).cast(
                    pa.list_(pa.float32())
                ),
            }
        )
        storage.write_parquet(str(emb / f"part-{part:05d}.parquet"), table)
    items = {name: pa.nulls(rows, POOL_SCHEMA.field(name).type) for name in POOL_SCHEMA.names}
    items[S.ID] = pa.array(ids[::-1])  # another order than the embeddings'
    items[S.TEXT] = pa.array([f"text of {i}" for i in ids[::-1]])
    items[S.GROUP] = pa.array([f"g{int(i[1:]) % 7}" for i in ids[::-1]])
    storage.write_parquet(str(folder / "items" / "part-0.parquet"), pa.table(items, POOL_SCHEMA))
    return str(folder), str(folder / "items"), x


def query_batch(x: np.ndarray, which: list[int]) -> pa.Table:
    """Query rows as the embed stage hands them to retrieval: pool rows as queries."""
    from uniembed.mining.inputs import QUERY_SCHEMA

    n = len(which)
    cols = {f.name: pa.nulls(n, f.type) for f in QUERY_SCHEMA}
    cols[S.ID] = pa.array([f"q{i}" for i in which])
    cols[S.POS_ID] = pa.array([f"d{i}" for i in which])
    table = pa.table(cols, QUERY_SCHEMA)
    table = table.append_column(S.STAGE, pa.array(["embed_query"] * n))
    table = table.append_column(S.EMBEDDING, pa.array([x[i].tolist() for i in which]))
    return table.append_column(S.EMBED_S, pa.array([0.0] * n, pa.float64()))


def probe_actor():  # noqa: ANN201 - a Ray actor class
    import ray

    from uniembed.index.shared import is_zero_copy
    from uniembed.mining.retrieval_stage import RetrievalStage

    def anon() -> int:  # defined here: the actor cannot import this test module
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no RssAnon in /proc/self/status")

    @ray.remote(num_cpus=0)
    class Probe:
        """A retrieval actor that reports its private memory around taking the pool."""

        def __init__(self, options, copy: bool = False) -> None:  # noqa: ANN001
            self.before = anon()
            self.stage = RetrievalStage(options)
            if copy:  # what a per-actor copy of the pool looks like
                self.copy = self.stage.index.index.reconstruct_n(0, self.stage.index.index.ntotal)

        def run(self, batch: pa.Table) -> tuple[pa.Table, int, bool]:
            out = self.stage(batch)
            return out, anon() - self.before, is_zero_copy(self.stage.index)

    return Probe


def check_pool_held_once(tmp_path: Path, rows: int, **retrieval: object) -> str:
    """Share a pool of ``rows`` and retrieve with a probe actor; assert one copy.
    Returns the index kind built."""
    import ray

    from uniembed.mining.retrieval_stage import RetrievalOptions, share_pool

    embeddings, items, x = write_pool(tmp_path, rows)
    nbytes = x.nbytes
    which = [3, 17, rows - 1]
    queries = query_batch(x, which)
    del x
    section = RetrievalSection(k=5, **retrieval)  # type: ignore[arg-type]
    driver_before = anon_bytes()
    pool = share_pool(embeddings, items, section)
    driver_growth = anon_bytes() - driver_before
    assert pool.nbytes == nbytes
    assert driver_growth < nbytes / 2, f"the driver grew by {driver_growth} for a pool of {nbytes}"

    options = RetrievalOptions(pool=pool, retrieval=section)
    probe = probe_actor()
    actor = probe.remote(options)
    out, growth, zero_copy = ray.get(actor.run.remote(queries))
    assert zero_copy, "the actor's index does not view the object store's buffer"
    assert growth < nbytes / 2, f"the actor grew by {growth} for a pool of {nbytes}"
    for row, q in zip(out.to_pylist(), which, strict=True):
        assert row[S.POS_RANK] == 1 and row[S.POS_SIM] == pytest.approx(1.0, abs=1e-5)
        assert len(row[S.CAND_IDS]) == 5 and row[S.CAND_TEXTS][0] == f"text of {row[S.CAND_IDS][0]}"
        assert row[S.POS_TEXT] == f"text of d{q}"

    # The probe is able to fail: an actor that copies the pool grows by the pool's bytes
    # more than this one (both pay the same fixed costs: imports, BLAS buffers).
    copier = probe.remote(options, copy=True)
    _, copy_growth, _ = ray.get(copier.run.remote(queries))
    assert copy_growth - growth > nbytes * 0.9
    ray.kill(actor)
    ray.kill(copier)
    return pool.plan.kind


def test_pool_is_held_once_in_the_object_store(ray_start_2_cpus: None, tmp_path: Path) -> None:
    assert check_pool_held_once(tmp_path, 60_000) == "flat"


@pytest.mark.slow
def test_pool_of_100k_is_held_once_with_flat_and_ivf(
    ray_start_2_cpus: None, tmp_path: Path
) -> None:
    assert check_pool_held_once(tmp_path / "flat", 100_000) == "flat"
    assert check_pool_held_once(tmp_path / "ivf", 100_000, approximate_above=50_000) == "ivf"
