"""Config of the mine job (UniME-V2 hard-negative mining with an MLLM judge)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from uniembed.config import require
from uniembed.index.choice import APPROXIMATE_ABOVE, AUTO_PROBE_SHARE
from uniembed.reranker.engine_config import JudgeEngine, VllmSection, engine_field
from uniembed.reranker.prompts import JUDGE_TEXT_TOKENS
from uniembed.sections import ActorPoolSection, ModelSection, RaySection, StorageSection

# Input layouts the mine job reads (see ``mine_inputs``).
QUERY_FORMATS = ("items", "pairs")


@dataclass
class RetrievalSection:
    """Global retrieval over the pool and the easy-candidate filter."""

    k: int = field(default=50, metadata={"help": "candidates per query (paper: 50)"})
    index: Literal["auto", "flat", "ivf"] = field(
        default="auto",
        metadata={"help": "auto: flat (exact) up to approximate_above pool rows, ivf above"},
    )
    approximate_above: int = field(
        default=APPROXIMATE_ABOVE, metadata={"help": "auto: pool rows above which ivf is used"}
    )
    nlist: int | None = field(default=None, metadata={"help": "ivf lists (default ~sqrt(rows))"})
    nprobe: int | None = field(
        default=None,
        metadata={
            "help": f"ivf lists searched per query (default {AUTO_PROBE_SHARE:.0%} of nlist)"
        },
    )
    # Easy: far below the positive. None keeps every retrieved candidate for the judge.
    easy_margin: float | None = field(
        default=None, metadata={"help": "drop candidates with sim < pos_sim - margin"}
    )
    min_sim: float | None = field(default=None, metadata={"help": "drop candidates below this"})
    max_sim: float | None = field(
        default=None,
        metadata={"help": "δ: drop candidates above this similarity (near-duplicates)"},
    )
    exclude_self: bool = field(default=False, metadata={"help": "queries drawn from the pool"})

    def __post_init__(self) -> None:
        require(self.k >= 1, "retrieval.k must be >= 1")
        require(self.nprobe is None or self.nprobe >= 1, "retrieval.nprobe must be >= 1")
        require(self.nlist is None or self.nlist >= 1, "retrieval.nlist must be >= 1")
        require(self.approximate_above >= 1, "retrieval.approximate_above must be >= 1")
        require(
            self.easy_margin is None or self.easy_margin >= 0,
            "retrieval.easy_margin must be >= 0",
        )
        require(
            self.max_sim is None or self.min_sim is None or self.min_sim <= self.max_sim,
            "retrieval.min_sim must be <= retrieval.max_sim",
        )


@dataclass
class SelectionSection:
    """Hard-negative selection; ``mode: similarity`` is the judge-free UniME mode."""

    mode: Literal["judge", "similarity"] = "judge"
    num_negatives: int = field(default=10, metadata={"help": "paper: 10 stored, 8 used"})
    beta: float = field(default=0.01, metadata={"help": "false negative: s > s_pos - beta"})
    step: int = field(default=5, metadata={"help": "cyclical sampling stride (paper: 5)"})
    max_fn_share: float = field(
        default=0.5,
        metadata={
            "help": "judge mode: the largest share of a query's candidates the false-negative "
            "rule may remove (the highest-scored); the rest stay negatives, so a query whose "
            "positive the scorer is unsure of is kept. 1.0: the paper's rule (such a query "
            "may lose every candidate and is quarantined)"
        },
    )
    score_resolution: float = field(
        default=0.01,
        metadata={
            "help": "judge mode: scores are ordered by hardness in steps of this size; closer "
            "scores are ties, kept in retrieval order (engines agree on P(Yes) only to ~1e-5, "
            "so an exact order of near-equal scores depends on the engine). 0: exact order"
        },
    )
    # judge-free options, named as in sentence-transformers' mine_hard_negatives
    absolute_margin: float | None = None
    relative_margin: float | None = None
    range_min: int = 0
    range_max: int | None = None
    sampling_strategy: Literal["top", "random"] = "top"
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.num_negatives >= 1, "selection.num_negatives must be >= 1")
        require(self.beta >= 0, "selection.beta must be >= 0")
        require(self.step >= 1, "selection.step must be >= 1")
        require(0.0 <= self.max_fn_share <= 1.0, "selection.max_fn_share must be in [0, 1]")
        require(self.score_resolution >= 0, "selection.score_resolution must be >= 0")
        require(self.range_min >= 0, "selection.range_min must be >= 0")


@dataclass
class JudgeSection:
    """The (M)LLM judge and its actor pool."""

    model: ModelSection = field(default_factory=lambda: ModelSection(name="smollm2-135m"))
    compute: ActorPoolSection = field(
        default_factory=lambda: ActorPoolSection(micro_batch_size=16, rows_per_call=16)
    )
    include_instruction: bool = field(
        default=True, metadata={"help": "put the query's task instruction in the judge prompt"}
    )
    engine: JudgeEngine = engine_field()
    vllm: VllmSection = field(default_factory=VllmSection)
    max_text_tokens: int = field(
        default=JUDGE_TEXT_TOKENS,
        metadata={"help": "each query and candidate text is cut to this many tokens"},
    )

    def __post_init__(self) -> None:
        require(self.max_text_tokens >= 1, "judge.max_text_tokens must be >= 1")


@dataclass
class SanitySection:
    """The judge's sanity check, made before its scores decide anything.

    The first ``calibration_queries`` queries (whole shards) are judged first; the mean
    per-query AUC of the positive's score against its candidates' on them must reach
    ``auc_floor``. Below it, ``on_fail`` decides the rest of the run:

    - ``fallback``: the judge stops; the embedder's similarities drive the false-negative
      filter, the hard-negative choice and the soft labels (rows say ``score_source:
      embedder``), and the report and the job's last line say so;
    - ``stop``: the job ends before selection with exit code 3;
    - ``continue``: the judge's scores are used anyway, with a loud warning.
    """

    auc_floor: float = field(default=0.6, metadata={"help": "the judge's minimum AUC"})
    calibration_queries: int = field(
        default=64, metadata={"help": "queries judged and checked before the rest"}
    )
    on_fail: Literal["fallback", "stop", "continue"] = field(
        default="fallback", metadata={"help": "below the floor: fallback | stop | continue"}
    )

    def __post_init__(self) -> None:
        require(0.0 <= self.auc_floor <= 1.0, "sanity.auc_floor must be in [0, 1]")
        require(self.calibration_queries >= 1, "sanity.calibration_queries must be >= 1")


@dataclass
class MineConfig:
    """python jobs/mine.py [--config YAML] [key=value ...]"""

    queries: str = field(
        default="", metadata={"help": "queries with pos_id (file or folder, local or s3://)"}
    )
    queries_format: Literal["items", "pairs"] = field(
        default="items", metadata={"help": "items: rows with pos_id; pairs: id/image/title"}
    )
    pool: str | None = field(
        default=None, metadata={"help": "candidate pool in item format (pairs: the titles)"}
    )
    output: str = field(default="", metadata={"help": "output folder (local or s3://)"})
    max_queries: int | None = field(default=None, metadata={"help": "first N queries only"})
    shard_size: int = field(default=32, metadata={"help": "queries per output shard"})
    group_field: str | None = field(
        default=None,
        metadata={"help": "pool field naming true false negatives (demo: definition_group)"},
    )
    image_prefixes: list[str] = field(
        default_factory=list,
        metadata={"help": "folders or s3:// prefixes images may come from besides the inputs'"},
    )
    follow_symlinks: bool = field(
        default=False,
        metadata={"help": "read input files through folder links (loops are never followed)"},
    )
    allow_empty: bool = field(
        default=False,
        metadata={"help": "let a run that mined no row replace an existing output"},
    )
    embedder: ModelSection = field(default_factory=ModelSection)
    embed_compute: ActorPoolSection = field(default_factory=ActorPoolSection)
    retrieval: RetrievalSection = field(default_factory=RetrievalSection)
    judge: JudgeSection = field(default_factory=JudgeSection)
    selection: SelectionSection = field(default_factory=SelectionSection)
    sanity: SanitySection = field(default_factory=SanitySection)
    ray: RaySection = field(default_factory=RaySection)
    storage: StorageSection = field(default_factory=StorageSection)
    resume: bool = field(
        default=True, metadata={"help": "keep finished shards of an earlier run and skip them"}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "let the job replace files in output it did not write"}
    )
    fail_after_shards: int | None = field(
        default=None, metadata={"help": "testing: fail after writing this many judged shards"}
    )
    query_stage_attempts: int = field(
        default=3,
        metadata={
            "help": "runs of the embed/retrieve/judge pass when a node or worker is lost "
            "mid-pass (each run skips the shards already written)"
        },
    )

    def __post_init__(self) -> None:
        require(bool(self.queries), "queries is required (--queries URI)")
        require(bool(self.output), "output is required (--output URI)")
        require(
            self.pool is not None or self.queries_format == "pairs",
            "pool is required unless queries_format is pairs",
        )
        require(self.max_queries is None or self.max_queries >= 1, "max_queries must be >= 1")
        require(self.shard_size >= 1, "shard_size must be >= 1")
        require(
            self.fail_after_shards is None or self.fail_after_shards >= 1,
            "fail_after_shards must be >= 1",
        )
        require(self.query_stage_attempts >= 1, "query_stage_attempts must be >= 1")

    @property
    def judge_name(self) -> str | None:
        """The judge's model name, or None in the judge-free mode."""
        return self.judge.model.name if self.selection.mode == "judge" else None
