"""Config of the serve app: the ``args`` of ``jobs/configs/serve.yaml``, validated on load.

Every deployment has its own resources, batching and autoscaling section, so that the
embedder can run on a GPU while the retriever and the ingress take a slice of a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from uniembed.config import from_dict, require
from uniembed.reranker.prompts import JUDGE_TEXT_TOKENS
from uniembed.storage import S3Options

Device = Literal["auto", "cpu", "cuda"]


@dataclass
class DeploymentSection:
    """Resources, dynamic batching and autoscaling of one Serve deployment."""

    num_cpus: float = field(default=0.5, metadata={"help": "CPUs per replica (fractional ok)"})
    num_gpus: float = field(default=0.0, metadata={"help": "GPUs per replica (fractional ok)"})
    max_batch_size: int = field(
        default=32, metadata={"help": "per batch: inputs (embedder), requests (the others)"}
    )
    batch_wait_timeout_s: float = field(
        default=0.01, metadata={"help": "how long a partial batch waits for more requests"}
    )
    # Serve's default of 5 caps every batch at 5 requests; allow a few batches in flight.
    max_ongoing_requests: int = field(default=128, metadata={"help": ">= max_batch_size"})
    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = field(
        default=32.0, metadata={"help": "autoscaling target per replica"}
    )
    resources: dict[str, float] = field(
        default_factory=dict, metadata={"help": "custom Ray resources per replica"}
    )

    def __post_init__(self) -> None:
        require(self.num_cpus >= 0, "num_cpus must be >= 0")
        require(self.num_gpus >= 0, "num_gpus must be >= 0")
        require(self.max_batch_size >= 1, "max_batch_size must be >= 1")
        require(self.batch_wait_timeout_s >= 0, "batch_wait_timeout_s must be >= 0")
        require(
            self.max_ongoing_requests >= self.max_batch_size,
            f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= max_batch_size "
            f"({self.max_batch_size}), or batches can never fill",
        )
        require(self.min_replicas >= 0, "min_replicas must be >= 0")
        require(self.max_replicas >= max(1, self.min_replicas), "max_replicas must be >= 1")
        require(self.target_ongoing_requests > 0, "target_ongoing_requests must be > 0")

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        opts: dict[str, Any] = {
            "ray_actor_options": {
                "num_cpus": self.num_cpus,
                "num_gpus": self.num_gpus,
                **({"resources": dict(self.resources)} if self.resources else {}),
            },
            "max_ongoing_requests": self.max_ongoing_requests,
        }
        if self.min_replicas == self.max_replicas:
            opts["num_replicas"] = self.max_replicas
        else:
            opts["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        return opts


@dataclass
class EmbedderSection:
    """The embedding model."""

    model: str = field(default="minilm", metadata={"help": "registry name, folder or s3:// URI"})
    served_name: str | None = field(
        default=None, metadata={"help": "name clients pass as `model` (default: model)"}
    )
    device: Device = "auto"
    dtype: str | None = None
    pooling: Literal["last", "mean"] | None = None
    matryoshka: bool = field(
        default=False, metadata={"help": "allow `dimensions` (truncate + renormalise)"}
    )
    micro_batch_size: int | None = field(
        default=16, metadata={"help": "inputs per forward pass, length-sorted (null: batch)"}
    )
    max_length: int | None = field(
        default=None, metadata={"help": "texts cut to this many tokens (null: model's, 8192)"}
    )
    cpu_threads: int | Literal["auto"] | None = field(
        default=None,
        metadata={
            "help": "torch threads on CPU: a number, auto (every CPU this replica may run "
            "on: a node of its own) or null (deployment.num_cpus rounded up: packed nodes)"
        },
    )
    backend: Literal["auto", "torch", "onnx"] = field(
        default="auto",
        metadata={
            "help": "the forward pass: onnx (ONNX Runtime; text encoders on CPU, exported "
            "once to the model cache), torch, or auto (onnx where it applies, else torch)"
        },
    )
    adaptive_wait: bool = field(
        default=True,
        metadata={
            "help": "wait up to deployment.batch_wait_timeout_s for a batch to fill only "
            "after a batch of more than one input (a lone client never waits)"
        },
    )
    deployment: DeploymentSection = field(default_factory=DeploymentSection)

    def __post_init__(self) -> None:
        require(bool(self.model), "embedder.model must not be empty")
        require(
            self.cpu_threads in (None, "auto")
            or (isinstance(self.cpu_threads, int) and self.cpu_threads >= 1),
            f"embedder.cpu_threads must be >= 1, auto or null, got {self.cpu_threads!r}",
        )
        require(
            self.micro_batch_size is None or self.micro_batch_size >= 1,
            "embedder.micro_batch_size must be >= 1",
        )

    @property
    def name(self) -> str:
        """The model name clients see."""
        return self.served_name or self.model

    @property
    def threads(self) -> int:
        """Torch threads for a CPU replica: ``cpu_threads``; ``auto``, every CPU this
        process may use (:func:`uniembed.runtime.usable_cpus`); null, the replica's CPUs
        (Ray's own default rounds fractions down, so a replica of 1.75 CPUs would run one
        thread; a share of a core still gets one)."""
        if self.cpu_threads == "auto":
            from uniembed.runtime import usable_cpus

            return usable_cpus()
        return self.cpu_threads or max(1, math.ceil(self.deployment.num_cpus))


@dataclass
class RerankerSection:
    """The reranker (a judge scoring P(Yes) of query-candidate pairs)."""

    enabled: bool = True
    model: str = field(
        default="smollm2-135m-judge", metadata={"help": "registry name, folder, s3://"}
    )
    served_name: str | None = None
    device: Device = "auto"
    score_batch_size: int = field(default=16, metadata={"help": "candidates per forward pass"})
    max_text_tokens: int = field(
        default=JUDGE_TEXT_TOKENS,
        metadata={"help": "query and document texts are cut to this many tokens"},
    )
    max_batch_tokens: int = field(
        default=256,
        metadata={
            "help": "the most tokens one step computes (a forward of one request: a chunk "
            "of its query, short documents packed, or a chunk of a long document): a short "
            "request waits for at most one such step of each request ahead of it"
        },
    )
    deployment: DeploymentSection = field(
        default_factory=lambda: DeploymentSection(max_batch_size=8, max_ongoing_requests=32)
    )

    def __post_init__(self) -> None:
        require(bool(self.model), "reranker.model must not be empty")
        require(self.score_batch_size >= 1, "reranker.score_batch_size must be >= 1")
        require(self.max_text_tokens >= 1, "reranker.max_text_tokens must be >= 1")
        require(self.max_batch_tokens >= 1, "reranker.max_batch_tokens must be >= 1")

    @property
    def name(self) -> str:
        """The model name clients see."""
        return self.served_name or self.model


@dataclass
class RetrieverSection:
    """The FAISS index and the documents its ids point to."""

    enabled: bool = True
    index: str | None = field(
        default=None, metadata={"help": "index.faiss URI; null: build one from the demo corpus"}
    )
    documents: str | None = field(
        default=None, metadata={"help": "items file/folder (id, text, image_uri) for results"}
    )
    demo_limit: int | None = field(
        default=None, metadata={"help": "demo index only: first N corpus rows (null: all)"}
    )
    query_instruction: str | None = field(
        default=None, metadata={"help": "instruction for queries without one"}
    )
    max_top_k: int = 100
    rerank_candidates: int = field(default=20, metadata={"help": "top-k reranked by default"})
    deployment: DeploymentSection = field(
        default_factory=lambda: DeploymentSection(num_cpus=0.25, max_batch_size=64)
    )

    def __post_init__(self) -> None:
        require(self.max_top_k >= 1, "retriever.max_top_k must be >= 1")
        require(self.rerank_candidates >= 1, "retriever.rerank_candidates must be >= 1")
        require(self.demo_limit is None or self.demo_limit >= 1, "retriever.demo_limit >= 1")


@dataclass
class LimitsSection:
    """Request limits; going over one is a 413 naming it."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_inputs: int = field(default=256, metadata={"help": "inputs per embeddings request"})
    max_documents: int = field(default=256, metadata={"help": "documents per rerank request"})
    max_text_chars: int = 32_000
    max_image_bytes: int = 8 * 1024 * 1024
    max_image_pixels: int = 16_000_000
    image_uri_prefixes: list[str] = field(
        default_factory=lambda: ["s3://"],
        metadata={"help": "storage URIs clients may name as images ([] = data URIs only)"},
    )

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_inputs", "max_documents", "max_text_chars"):
            require(getattr(self, name) >= 1, f"limits.{name} must be >= 1")
        require(self.max_image_bytes >= 1, "limits.max_image_bytes must be >= 1")
        require(self.max_image_pixels >= 1, "limits.max_image_pixels must be >= 1")
        require(all(self.image_uri_prefixes), "limits.image_uri_prefixes: empty prefix")


@dataclass
class AuthSection:
    """Optional API key: from a secret file, else from an environment variable."""

    api_key_env: str | None = field(
        default="UNIEMBED_API_KEY", metadata={"help": "variable holding the key; unset: no auth"}
    )
    api_key_file: str | None = field(default=None, metadata={"help": "file holding the key"})


@dataclass
class ServeConfig:
    """serve run jobs/configs/serve.yaml"""

    embedder: EmbedderSection = field(default_factory=EmbedderSection)
    reranker: RerankerSection = field(default_factory=RerankerSection)
    retriever: RetrieverSection = field(default_factory=RetrieverSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    auth: AuthSection = field(default_factory=AuthSection)
    ingress: DeploymentSection = field(
        default_factory=lambda: DeploymentSection(num_cpus=0.25, max_ongoing_requests=256),
        metadata={
            "help": "the HTTP work of the ingress replica, which also holds the embedder: "
            "num_cpus is added to embedder.deployment's, max_ongoing_requests caps the "
            "replica (the larger of the two); replicas follow embedder.deployment"
        },
    )
    storage: S3Options = field(default_factory=S3Options)
    title: str = "uniembed"

    def ingress_options(self) -> dict[str, Any]:
        """``Deployment.options`` of the ingress replica, which holds the embedder: the
        embedder's resources, batching and autoscaling plus the HTTP share of a CPU."""
        opts = self.embedder.deployment.options()
        actor = opts["ray_actor_options"]
        actor["num_cpus"] = actor["num_cpus"] + self.ingress.num_cpus
        actor["num_gpus"] = actor["num_gpus"] + self.ingress.num_gpus
        opts["max_ongoing_requests"] = max(
            self.embedder.deployment.max_ongoing_requests, self.ingress.max_ongoing_requests
        )
        return opts


def load_serve_config(args: Mapping[str, Any] | ServeConfig | None) -> ServeConfig:
    """The validated config from a Serve ``args`` mapping (unknown keys are errors)."""
    if isinstance(args, ServeConfig):
        return args
    return from_dict(ServeConfig, dict(args or {}))
