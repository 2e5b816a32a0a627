"""The Ray Data judge stage: an actor holding a :class:`JudgeScorer`.

One row per query comes in with its (easy-filtered) candidates; the judge scores the
query–positive pair and every candidate in one shared-prefix call (the query is encoded
once), and the row leaves with ``query_pos_score``, the candidate scores and the row's AUC.

:func:`load_judge` and :func:`judge_input` are what every judge actor does (the evaluate
job's rerank stage holds the same scorer the same way).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.images import DEFAULT_MAX_PIXELS, ImageError, load_image
from uniembed.data.schema import (
    AUC,
    CAND_IDS,
    CAND_IMAGES,
    CAND_SCORES,
    CAND_TEXTS,
    JUDGE_S,
    N_PAIRS,
)
from uniembed.mining.columns import judge_fields
from uniembed.mining.report import positive_auc
from uniembed.observe.figures import count
from uniembed.observe.live import report
from uniembed.observe.names import stage_of_instance
from uniembed.reranker.engine_config import VllmSection
from uniembed.reranker.prompts import JUDGE_TEXT_TOKENS
from uniembed.reranker.scorer import JudgeInput, JudgeScorer

if TYPE_CHECKING:
    from uniembed.reranker.vllm_engine import VllmJudge

logger = logging.getLogger(__name__)

JUDGE_STAGE = "judge"


@dataclass(frozen=True)
class JudgeOptions:
    """What every judge actor needs; picklable."""

    model: str
    device: str = "cpu"
    dtype: str | None = None
    batch_size: int = 16
    include_instruction: bool = True
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    s3: storage.S3Options | None = None
    # CPU actors: torch threads. None keeps Ray's setting, the actor's CPU reservation
    # (at least 1). On a shared 2-core machine more threads than reserved CPUs made the
    # judge many times slower (benchmarks/judge_throughput.py --threads 1,2).
    cpu_threads: int | None = None
    # "transformers" (JudgeScorer) or "vllm" (reranker/vllm_engine.py: the actor must run in
    # vLLM's venv and ``model`` be a plain folder; ``vllm_engine.actor_setup`` gives both).
    engine: str = "transformers"
    vllm: VllmSection | None = None
    max_text_tokens: int = JUDGE_TEXT_TOKENS  # each text of a prompt, in tokens


def query_text(text: str | None, instruction: str | None, include_instruction: bool) -> str | None:
    """The query's text as the judge reads it: the task instruction, then the text."""
    parts = [instruction if include_instruction else None, text]
    joined = "\n".join(p for p in parts if p)
    return joined or None


def load_judge(options: JudgeOptions) -> JudgeScorer | VllmJudge:
    """A judge actor's setup: storage options, CPU threads, then the scorer of
    ``options.engine``."""
    import torch

    storage.configure(options.s3)
    if options.device == "cpu" and options.cpu_threads is not None:
        torch.set_num_threads(options.cpu_threads)
    if options.engine == "vllm":
        from uniembed.reranker.vllm_engine import VllmJudge

        judge = VllmJudge.load(
            options.model, device=options.device, dtype=options.dtype, section=options.vllm
        )
        judge.prompts.max_text_tokens = options.max_text_tokens
        return judge
    scorer = JudgeScorer.load(options.model, device=options.device, dtype=options.dtype)
    scorer.max_text_tokens = options.max_text_tokens
    logger.info(
        "judge %s on %s: %d torch threads, %s",
        options.model,
        options.device,
        torch.get_num_threads(),
        "candidates packed behind the prefix"
        if scorer.packs_candidates
        else "padded candidates on prefix cache copies",
    )
    return scorer


def judge_input(
    text: str | None,
    image: bytes | None,
    image_uri: str | None,
    record: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> JudgeInput:
    """One side of a judged pair from a row's text and image (bytes or URI).

    Raises:
        ImageError: the image cannot be read or decoded.
        ValueError: neither text nor image.
    """
    decoded = load_image(image, image_uri, record=record, max_pixels=max_pixels)
    if not text and decoded is None:
        raise ValueError(f"record {record}: has neither text nor image to judge")
    return JudgeInput(text=text or None, image=decoded)


class JudgeWorker:
    """Callable class for ``Dataset.map_batches``: loads the judge once per actor."""

    def __init__(self, options: JudgeOptions) -> None:
        self.options = options
        self.scorer = load_judge(options)

    def _input(self, text: str | None, image_uri: str | None, record: str) -> JudgeInput:
        return judge_input(text, None, image_uri, record, self.options.max_image_pixels)

    def _score_row(self, row: dict[str, Any]) -> None:
        qid = row[S.ID]
        query = self._input(
            query_text(row[S.TEXT], row[S.INSTRUCTION], self.options.include_instruction),
            row[S.IMAGE_URI],
            qid,
        )
        positive = self._input(row[S.POS_TEXT], row[S.POS_IMAGE], row[S.POS_ID])
        candidates = [
            self._input(t, im, cid)
            for cid, t, im in zip(row[CAND_IDS], row[CAND_TEXTS], row[CAND_IMAGES], strict=True)
        ]
        scores = self.scorer.score(
            query, [positive, *candidates], batch_size=self.options.batch_size
        )
        row[S.POS_SCORE] = float(scores[0])
        row[CAND_SCORES] = [float(s) for s in scores[1:]]
        row[AUC] = positive_auc(float(scores[0]), scores[1:])
        row[N_PAIRS] = len(scores)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        stage = stage_of_instance(self)  # the operator's name: mine/judge
        for row in rows:
            start = time.perf_counter()
            for f in judge_fields():
                row[f.name] = None
            if not row[S.ERROR]:
                try:
                    self._score_row(row)
                except (ImageError, ValueError) as e:
                    row[S.ERROR], row[S.STAGE] = f"record {row[S.ID]}: judge: {e}", JUDGE_STAGE
            row[JUDGE_S] = time.perf_counter() - start
            # Live progress after every judge call, not every block: the driver's progress
            # line (observe.live) and Prometheus / the dashboard's metrics.
            pairs = row.get(N_PAIRS) or 0
            report(stage, done=pairs)
            if pairs:  # a Ray Counter takes only positive steps
                count("mine", "pairs_judged", pairs)
            count("mine", "queries_judged", 1)
        return pa.Table.from_pylist(rows, schema=pa.schema([*batch.schema, *judge_fields()]))
