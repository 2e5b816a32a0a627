"""The judge's engine settings (``judge.engine``, ``judge.vllm``): torch-free, so that the
mine and evaluate configs (read by every stage process) do not import the training stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from uniembed.config import require

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


def engine_field() -> Any:
    """The ``engine`` config field, the same wherever a job picks the judge's engine."""
    return field(
        default="transformers",
        metadata={
            "help": "transformers: our packed shared-prefix scorer | vllm: vLLM in its own venv "
            "(UNIEMBED_VLLM=1 bash scripts/setup.sh)"
        },
    )
