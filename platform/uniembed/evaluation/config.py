"""Config of the evaluate job."""

from __future__ import annotations

from dataclasses import dataclass, field

from uniembed.config import require
from uniembed.reranker.engine_config import JudgeEngine, VllmSection, engine_field
from uniembed.sections import ActorPoolSection, ModelSection, RaySection, StorageSection


@dataclass
class RerankPoolSection(ActorPoolSection):
    """The reranker's actor pool (as the mine job's ``judge.compute``).

    ``micro_batch_size`` is candidates per forward, ``rows_per_call`` queries per actor
    call (and per progress line). Embedding is over when the rerank runs, so an actor may
    take a whole CPU (Ray then gives it one torch thread).
    """

    cpus_per_actor: float = 1.0
    micro_batch_size: int = field(default=16, metadata={"help": "candidates per forward pass"})
    rows_per_call: int = field(default=16, metadata={"help": "queries per actor call"})


@dataclass
class EvalConfig:
    """python jobs/evaluate.py --model NAME --data URI [--data URI ...] --output URI"""

    data: list[str] = field(
        default_factory=list,
        metadata={"help": "JSONL files or folders of them; one task per file (local or s3://)"},
    )
    output: str = field(default="", metadata={"help": "report folder (local or s3://)"})
    model: ModelSection = field(default_factory=ModelSection)
    baseline: str | None = field(
        default=None,
        metadata={"help": "second model evaluated the same way, or an earlier metrics.json"},
    )
    rerank: str | None = field(
        default=None,
        metadata={"help": "reranker (folder, URI or name) re-scoring each query's top-k"},
    )
    rerank_top_k: int = field(default=10, metadata={"help": "candidates the reranker scores"})
    rerank_compute: RerankPoolSection = field(default_factory=RerankPoolSection)
    rerank_engine: JudgeEngine = engine_field()
    rerank_vllm: VllmSection = field(default_factory=VllmSection)
    groups: str | None = field(
        default=None, metadata={"help": "YAML {group: [task, ...]}; default MMEB's CLS/VQA/RET/VG"}
    )
    dedupe: bool = field(default=True, metadata={"help": "embed each distinct item once"})
    ks: list[int] = field(default_factory=lambda: [1, 5, 10], metadata={"help": "hit@k / R@k"})
    compute: ActorPoolSection = field(default_factory=ActorPoolSection)
    ray: RaySection = field(default_factory=RaySection)
    storage: StorageSection = field(default_factory=StorageSection)
    work_dir: str | None = field(
        default=None,
        metadata={"help": "staged items + embeddings; default <output>/_work (cluster-visible)"},
    )
    keep_work: bool = field(default=False, metadata={"help": "keep work_dir after the run"})
    allow_empty: bool = field(
        default=False,
        metadata={"help": "let a run that scored no query replace an existing report"},
    )

    def __post_init__(self) -> None:
        require(bool(self.data), "data is required (--data URI, repeatable)")
        require(all(bool(d) for d in self.data), "data: every URI must be non-empty")
        require(bool(self.output), "output is required (--output URI)")
        require(self.baseline != "", "baseline must not be empty (omit it for none)")
        require(self.rerank != "", "rerank must not be empty (omit it for none)")
        require(self.rerank_top_k >= 1, "rerank_top_k must be >= 1")
        require(bool(self.ks), "ks: need at least one cutoff")
        require(all(k >= 1 for k in self.ks), f"ks: every cutoff must be >= 1, got {self.ks}")
