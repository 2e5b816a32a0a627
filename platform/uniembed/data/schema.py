"""Column names and Arrow schemas shared by every stage.

Every job reads and writes these names; nothing else in the code base spells a column
name as a literal string.
"""

from __future__ import annotations

import pyarrow as pa

# --- items: what the embed pipeline consumes -------------------------------------------
ID = "id"
TEXT = "text"
IMAGE = "image"  # encoded image bytes (PNG/JPEG/...), or null
IMAGE_URI = "image_uri"  # local path or s3:// URI of an image, or null
INSTRUCTION = "instruction"  # task instruction prepended to the input, or null

ITEM_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(TEXT, pa.string()),
        pa.field(IMAGE, pa.binary()),
        pa.field(IMAGE_URI, pa.string()),
        pa.field(INSTRUCTION, pa.string()),
    ]
)

# --- embeddings: what the embed pipeline writes ----------------------------------------
EMBEDDING = "embedding"
MODEL = "model"
DIM = "dim"


def embedding_schema() -> pa.Schema:
    """Schema of an embeddings shard: id, L2-normalised float32 vector, model name, dim."""
    return pa.schema(
        [
            pa.field(ID, pa.string(), nullable=False),
            pa.field(EMBEDDING, pa.list_(pa.float32())),
            pa.field(MODEL, pa.string()),
            pa.field(DIM, pa.int32()),
        ]
    )


# --- quarantine: records a job could not process ---------------------------------------
REASON = "reason"
STAGE = "stage"
SOURCE = "source"  # file (and line) the record came from, when known
ERROR = "error"  # why a record failed, or null; rows with an error go to quarantine

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string()),
        pa.field(STAGE, pa.string()),
        pa.field(REASON, pa.string()),
        pa.field(SOURCE, pa.string()),
    ]
)

# --- mined training rows: what the mine job writes and the tune / reranker jobs read ----
# One row per query: its positive, k hard negatives and the judge's soft scores. Images
# are URIs (local path or s3://) or null. List columns hold one entry per negative.
QUERY_ID = "query_id"
QUERY_TEXT = "query_text"
QUERY_IMAGE = "query_image"
QUERY_INSTRUCTION = "query_instruction"
POS_ID = "pos_id"
POS_TEXT = "pos_text"
POS_IMAGE = "pos_image"
POS_SCORE = "query_pos_score"  # judge P(Yes) of the query-positive pair (1.0 if unjudged)
NEG_IDS = "neg_ids"
NEG_TEXTS = "neg_texts"
NEG_IMAGES = "neg_images"
NEG_SCORES = "neg_scores"  # judge P(Yes) per negative, same order as NEG_IDS
NEG_RANKS = "neg_ranks"  # 1-based retrieval rank of each negative in the top-K
FILLED = "filled"  # true when too few negatives remained and some were repeated
N_FILLED = "n_filled"
# provenance
EMBEDDER = "embedder"
JUDGE = "judge"
TOP_K = "top_k"
BETA = "beta"
# Who scored the row's positive and negatives: "judge" (the MLLM judge's P(Yes)) or
# "embedder" (cosine similarities: the judge-free mode, or the judge failed its check).
SCORE_SOURCE = "score_source"
SCORE_JUDGE = "judge"
SCORE_EMBEDDER = "embedder"

MINED_SCHEMA = pa.schema(
    [
        pa.field(QUERY_ID, pa.string(), nullable=False),
        pa.field(QUERY_TEXT, pa.string()),
        pa.field(QUERY_IMAGE, pa.string()),
        pa.field(QUERY_INSTRUCTION, pa.string()),
        pa.field(POS_ID, pa.string()),
        pa.field(POS_TEXT, pa.string()),
        pa.field(POS_IMAGE, pa.string()),
        pa.field(POS_SCORE, pa.float32()),
        pa.field(NEG_IDS, pa.list_(pa.string())),
        pa.field(NEG_TEXTS, pa.list_(pa.string())),
        pa.field(NEG_IMAGES, pa.list_(pa.string())),
        pa.field(NEG_SCORES, pa.list_(pa.float32())),
        pa.field(NEG_RANKS, pa.list_(pa.int32())),
        pa.field(FILLED, pa.bool_()),
        pa.field(N_FILLED, pa.int32()),
        pa.field(EMBEDDER, pa.string()),
        pa.field(JUDGE, pa.string()),
        pa.field(TOP_K, pa.int32()),
        pa.field(BETA, pa.float32()),
        pa.field(SCORE_SOURCE, pa.string()),
    ]
)

# --- the mine pipeline's working columns (internal; its outputs use the names above) --
ORDINAL = "ordinal"  # position of the query record in the input, from 0
SHARD = "shard"  # shard name of the query
SHARD_ROWS = "shard_rows"  # rows in that shard (the writer knows when a shard is whole)
GROUP = "group"  # pool rows: the group_field value (true false negatives share it)
CAND_IDS = "cand_ids"
CAND_TEXTS = "cand_texts"
CAND_IMAGES = "cand_images"
CAND_SIMS = "cand_sims"
CAND_RANKS = "cand_ranks"  # 1-based retrieval rank
CAND_TRUE_FN = "cand_true_fn"  # candidate shares the positive's group
N_RETRIEVED = "n_retrieved"
N_EASY = "n_easy"
N_ABOVE_MAX = "n_above_max"  # dropped by the upper filter (sim > retrieval.max_sim, δ)
N_TRUE_FN_RETRIEVED = "n_true_fn_retrieved"  # true false negatives in the top K
POS_RANK = "pos_rank"  # 1-based rank of the positive in the top K, or null
POS_SIM = "pos_sim"
EMBED_S = "embed_s"  # this row's share of its batch's busy seconds, per stage
RETRIEVE_S = "retrieve_s"
CAND_SCORES = "cand_scores"  # the judge's P(Yes) per candidate
AUC = "auc"  # share of the query's candidates the judge scores below its positive
N_PAIRS = "n_pairs"  # pairs judged for the row (candidates + the positive)
JUDGE_S = "judge_s"

# --- the published UniME-V2 format (the mine job's export, the tune job's unime_v2) ---
# query_text, query_image, pos_text, pos_image: the same names as the mined rows'.
QUERY_POS_SCORES = "query_pos_scores"
HARD_NEGATIVES = "hard_negatives"
HARD_NEGATIVES_SCORES = "hard_negatives_scores"
