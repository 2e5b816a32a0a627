"""Config of ``jobs/train_reranker.py``: the train job's sections plus the chat settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from uniembed.config import require
from uniembed.sections import ModelSection, RaySection, StorageSection
from uniembed.training.train_config import (
    CheckpointSection,
    DebugSection,
    LoraSection,
    OptimSection,
    ScalingSection,
    check_batch,
)

JudgeEngine = Literal["transformers", "vllm"]
JUDGE_ENGINES: tuple[str, ...] = ("transformers", "vllm")


@dataclass
class VllmSection:
    """The vLLM judge engine (``engine: vllm``; ``reranker/vllm_engine.py``).

    vLLM runs in its own venv (``UNIEMBED_VLLM=1 bash scripts/setup.sh`` builds
    ``.venv-vllm``); the judge actors start in it through Ray's ``runtime_env``.
    """

    venv: str = field(
        default=".venv-vllm",
        metadata={"help": "vLLM's venv (relative paths: from the repository root)"},
    )
    block_size: int = field(
        default=0,
        metadata={
            "help": "KV-cache block size; the prefix cache reuses full blocks only. "
            "0: 32 on CPU (vLLM's CPU default 128 wastes most of a query prefix), "
            "vLLM's own default on GPU"
        },
    )
    cpu_kv_cache_gib: int = field(
        default=1, metadata={"help": "CPU: the KV cache's memory (VLLM_CPU_KVCACHE_SPACE)"}
    )
    gpu_memory_utilization: float = field(
        default=0.85, metadata={"help": "GPU: share of the GPU's memory vLLM may take"}
    )
    max_model_len: int = field(
        default=4096, metadata={"help": "longest prompt (tokens) the engine accepts"}
    )
    max_num_seqs: int = field(default=256, metadata={"help": "prompts scheduled at once"})
    compile: bool | None = field(
        default=None,
        metadata={
            "help": "torch.compile the model (CUDA graphs on GPU); None: on GPU only (on CPU "
            "the compile takes minutes per engine start)"
        },
    )

    def __post_init__(self) -> None:
        require(bool(self.venv), "vllm.venv must not be empty")
        require(self.block_size >= 0, "vllm.block_size must be >= 0")
        require(
            self.block_size == 0 or self.block_size % 16 == 0,
            "vllm.block_size must be a multiple of 16",
        )
        require(self.cpu_kv_cache_gib > 0, "vllm.cpu_kv_cache_gib must be > 0")
        require(
            0 < self.gpu_memory_utilization <= 1, "vllm.gpu_memory_utilization must be in (0, 1]"
        )
        require(self.max_model_len >= 64, "vllm.max_model_len must be >= 64")
        require(self.max_num_seqs >= 1, "vllm.max_num_seqs must be >= 1")


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

    def __post_init__(self) -> None:
        require(self.list_size >= 0, "data.list_size must be >= 0")
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
