"""The columns the retrieval and judge stages add to a query row, and their types.

Kept apart from the stages themselves so that the shard writer, the selection tasks and
the report read the judged shards without importing torch or transformers (each Ray
worker that imports them pays seconds).
"""

from __future__ import annotations

import pyarrow as pa

from uniembed.data import schema as S


def retrieval_fields() -> list[pa.Field]:
    """The columns :class:`~uniembed.mining.retrieval_stage.RetrievalStage` adds."""
    return [
        pa.field(S.POS_TEXT, pa.string()),
        pa.field(S.POS_IMAGE, pa.string()),
        pa.field(S.POS_RANK, pa.int32()),
        pa.field(S.POS_SIM, pa.float32()),
        pa.field(S.CAND_IDS, pa.list_(pa.string())),
        pa.field(S.CAND_TEXTS, pa.list_(pa.string())),
        pa.field(S.CAND_IMAGES, pa.list_(pa.string())),
        pa.field(S.CAND_SIMS, pa.list_(pa.float32())),
        pa.field(S.CAND_RANKS, pa.list_(pa.int32())),
        pa.field(S.CAND_TRUE_FN, pa.list_(pa.bool_())),
        pa.field(S.N_RETRIEVED, pa.int32()),
        pa.field(S.N_EASY, pa.int32()),
        pa.field(S.N_ABOVE_MAX, pa.int32()),
        pa.field(S.N_TRUE_FN_RETRIEVED, pa.int32()),
        pa.field(S.RETRIEVE_S, pa.float64()),
    ]


def judge_fields() -> list[pa.Field]:
    """The columns :class:`~uniembed.mining.judge_stage.JudgeWorker` adds."""
    return [
        pa.field(S.POS_SCORE, pa.float32()),
        pa.field(S.CAND_SCORES, pa.list_(pa.float32())),
        pa.field(S.AUC, pa.float64()),
        pa.field(S.N_PAIRS, pa.int32()),
        pa.field(S.JUDGE_S, pa.float64()),
    ]
