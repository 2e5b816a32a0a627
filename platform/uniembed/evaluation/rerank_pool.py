"""The evaluate job's rerank on the judge actor pool (Ray Data), as the mine job judges.

One row per query: its text/image and its top-k candidates' texts/images go in; the row
comes back with the candidates' P(Yes) (one shared-prefix ``JudgeScorer.score`` call per
query, in an actor that loaded the reranker once, ``judge_worker.load_judge``). The driver
prints a progress line as rows come back and the pairs/s of the whole stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from uniembed.data import schema as S
from uniembed.data.images import ImageError
from uniembed.data.schema import CAND_IMAGES, CAND_SCORES, CAND_TEXTS, JUDGE_S, N_PAIRS
from uniembed.evaluation.rerank import RerankRequest
from uniembed.mining.judge_stage import JudgeOptions, judge_input, load_judge
from uniembed.observe.names import named
from uniembed.sections import ActorPoolSection

CAND_IMAGE_BYTES = "cand_image_bytes"


def request_table(requests: Sequence[RerankRequest]) -> pa.Table:
    """One row per request: ``S.ID`` (its index), the query's text and image, the
    candidates' texts, image bytes and image URIs (``CAND_IMAGES``)."""
    rows = [
        {
            S.ID: str(i),
            S.SOURCE: r.source,
            S.TEXT: r.query.get(S.TEXT),
            S.IMAGE: r.query.get(S.IMAGE),
            S.IMAGE_URI: r.query.get(S.IMAGE_URI),
            CAND_TEXTS: [c.get(S.TEXT) for c in r.candidates],
            CAND_IMAGE_BYTES: [c.get(S.IMAGE) for c in r.candidates],
            CAND_IMAGES: [c.get(S.IMAGE_URI) for c in r.candidates],
        }
        for i, r in enumerate(requests)
    ]
    schema = pa.schema(
        [
            pa.field(S.ID, pa.string()),
            pa.field(S.SOURCE, pa.string()),
            pa.field(S.TEXT, pa.string()),
            pa.field(S.IMAGE, pa.binary()),
            pa.field(S.IMAGE_URI, pa.string()),
            pa.field(CAND_TEXTS, pa.list_(pa.string())),
            pa.field(CAND_IMAGE_BYTES, pa.list_(pa.binary())),
            pa.field(CAND_IMAGES, pa.list_(pa.string())),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _result_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field(S.ID, pa.string()),
            pa.field(CAND_SCORES, pa.list_(pa.float32())),
            pa.field(N_PAIRS, pa.int32()),
            pa.field(JUDGE_S, pa.float64()),
            pa.field(S.ERROR, pa.string()),
        ]
    )


class RerankWorker:
    """Callable class for ``Dataset.map_batches``: the reranker, loaded once per actor."""

    def __init__(self, options: JudgeOptions) -> None:
        self.options = options
        self.scorer = load_judge(options)

    def _score(self, row: dict[str, Any]) -> list[float]:
        source, px = row[S.SOURCE], self.options.max_image_pixels
        query = judge_input(row[S.TEXT], row[S.IMAGE], row[S.IMAGE_URI], source, px)
        cands = [
            judge_input(t, b, u, f"{source} candidate {j}", px)
            for j, (t, b, u) in enumerate(
                zip(row[CAND_TEXTS], row[CAND_IMAGE_BYTES], row[CAND_IMAGES], strict=True)
            )
        ]
        return self.scorer.score(query, cands, batch_size=self.options.batch_size).tolist()

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for row in batch.to_pylist():
            start = time.perf_counter()
            scores, error = None, None
            try:
                scores = self._score(row)
            except (ImageError, ValueError) as e:
                error = f"{row[S.SOURCE]}: reranker {self.scorer.name}: {e}"
            out.append(
                {
                    S.ID: row[S.ID],
                    CAND_SCORES: scores,
                    N_PAIRS: len(row[CAND_TEXTS]),
                    JUDGE_S: time.perf_counter() - start,
                    S.ERROR: error,
                }
            )
        return pa.Table.from_pylist(out, schema=_result_schema())


@dataclass
class PoolRun:
    """Scores of every request (request order) and how long the stage took."""

    scores: list[np.ndarray]
    n_pairs: int
    seconds: float  # wall time of the stage, actor start-up and model load included
    judge_seconds: float  # summed time inside ``score`` calls

    @property
    def pairs_per_s(self) -> float:
        """Pairs over the stage's wall time."""
        return self.n_pairs / self.seconds if self.seconds > 0 else 0.0


def _print(line: str) -> None:
    print(line, flush=True)


def score_on_pool(
    requests: Sequence[RerankRequest],
    options: JudgeOptions,
    compute: ActorPoolSection,
    resources: dict[str, float],
    progress: Callable[[str], None] = _print,
) -> PoolRun:
    """Score every request's candidates on a pool of ``compute.num_actors`` reranker
    actors (``compute.rows_per_call`` queries per call), reporting each batch of rows as it
    comes back.

    Raises:
        ValueError: a request could not be scored (names its source row).
    """
    import ray.data
    from ray.data import ActorPoolStrategy

    if not requests:  # no candidate-list task: no actor to start
        return PoolRun([], 0, 0.0, 0.0)
    start = time.perf_counter()
    total_pairs = sum(len(r.candidates) for r in requests)
    table, step = request_table(requests), compute.rows_per_call
    # One block per actor call, so results (and progress lines) stream back call by call.
    blocks = [table.slice(i, step) for i in range(0, table.num_rows, step)]
    ds = ray.data.from_arrow(blocks).map_batches(
        named(RerankWorker, "evaluate/rerank"),
        fn_constructor_args=(options,),
        compute=ActorPoolStrategy(size=compute.num_actors),
        batch_size=compute.rows_per_call,
        batch_format="pyarrow",
        **resources,
    )
    scores: list[np.ndarray | None] = [None] * len(requests)
    done_rows = done_pairs = 0
    judge_s = 0.0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            if row[S.ERROR]:
                raise ValueError(row[S.ERROR])
            scores[int(row[S.ID])] = np.asarray(row[CAND_SCORES], dtype=np.float32)
            done_pairs += row[N_PAIRS]
            judge_s += row[JUDGE_S]
        done_rows += batch.num_rows
        elapsed = time.perf_counter() - start
        progress(
            f"rerank: {done_rows}/{len(requests)} queries, {done_pairs}/{total_pairs} pairs, "
            f"{done_pairs / judge_s if judge_s else 0.0:.1f} pairs/s in the judge, "
            f"{elapsed:.0f} s"
        )
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise RuntimeError(f"rerank: {len(missing)} queries came back without scores")
    return PoolRun(
        [s for s in scores if s is not None], total_pairs, time.perf_counter() - start, judge_s
    )
