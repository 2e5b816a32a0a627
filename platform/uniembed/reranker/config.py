"""Config of ``jobs/train_reranker.py``: the train job's sections plus the chat settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from uniembed.config import require
from uniembed.reranker.prompts import JUDGE_TEXT_TOKENS
from uniembed.sections import ModelSection, RaySection, StorageSection
from uniembed.training.train_config import (
    CheckpointSection,
    DebugSection,
    LoraSection,
    OptimSection,
    ScalingSection,
    check_batch,
)


@dataclass
class RerankDataSection:
    """How rows become chats (``training.rerank_data``)."""

    list_size: int = field(
        default=5, metadata={"help": "hard negatives in the listwise chat; 0: no listwise"}
    )
    seed: int = field(default=0, metadata={"help": "seeds the positive's listwise slot"})
    pairwise_negatives: int = field(
        default=1,
        metadata={"help": "pairwise 'No' chats per row (1: the hardest; n: spread over hardness)"},
    )
    share_prefix: bool = field(
        default=True,
        metadata={"help": "a query's pairwise chats run on one encoding of its prompt prefix"},
    )
    chats_per_forward: int = field(
        default=0, metadata={"help": "chats per forward pass (gradients accumulate); 0: all"}
    )
    max_text_tokens: int = field(
        default=JUDGE_TEXT_TOKENS,
        metadata={"help": "each query and candidate text is cut to this many tokens"},
    )

    def __post_init__(self) -> None:
        require(self.list_size >= 0, "data.list_size must be >= 0")
        require(self.max_text_tokens >= 1, "data.max_text_tokens must be >= 1")
        require(self.pairwise_negatives >= 1, "data.pairwise_negatives must be >= 1")
        require(self.chats_per_forward >= 0, "data.chats_per_forward must be >= 0")


@dataclass
class RerankLossSection:
    """The reranker's objective: answer-token cross-entropy, plus an optional ranking term."""

    rank_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the per-query softmax of the positive against its pairwise "
            "negatives on the Yes-No margins (losses.RerankGroupLoss); 0: cross-entropy only"
        },
    )
    rank_temperature: float = field(
        default=1.0, metadata={"help": "temperature of the ranking term's softmax"}
    )

    def __post_init__(self) -> None:
        require(self.rank_weight >= 0, "loss.rank_weight must be >= 0")
        require(self.rank_temperature > 0, "loss.rank_temperature must be > 0")


@dataclass
class RerankConfig:
    """``jobs/train_reranker.py``: next-token training of a pairwise + listwise reranker.

    ``train.batch_size`` counts rows (each gives up to three chats).
    """

    input: str = field(default="", metadata={"help": "mined rows (file or folder URI)"})
    format: Literal["mined", "unime_v2", "mmeb_train"] = "mined"
    model: ModelSection = field(default_factory=lambda: ModelSection(name="tiny-qwen2-vl"))
    lora: LoraSection = field(default_factory=LoraSection)
    data: RerankDataSection = field(default_factory=RerankDataSection)
    loss: RerankLossSection = field(default_factory=RerankLossSection)
    train: OptimSection = field(default_factory=OptimSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    checkpoint: CheckpointSection = field(
        default_factory=lambda: CheckpointSection(name="reranker")
    )
    ray: RaySection = field(default_factory=RaySection)
    storage: StorageSection = field(default_factory=StorageSection)
    debug: DebugSection = field(default_factory=DebugSection)

    def __post_init__(self) -> None:
        require(bool(self.input), "input: the training rows must be given (--input URI)")
        require(
            self.train.grad_cache_chunk == 0,
            "train.grad_cache_chunk is a contrastive setting; use data.chats_per_forward",
        )
        check_batch(self.train, self.scaling)
