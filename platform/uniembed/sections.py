"""Config sections shared by several jobs (model, actor pool, Ray, storage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from uniembed.config import require
from uniembed.storage import S3Options


@dataclass
class ModelSection:
    """Which model to load and how."""

    name: str = field(default="minilm", metadata={"help": "registry name, folder or URI"})
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "auto: cuda when the cluster has GPUs"}
    )
    dtype: str | None = field(default=None, metadata={"help": "float32/bfloat16/float16"})
    pooling: Literal["last", "mean"] | None = field(
        default=None, metadata={"help": "override the model's pooling"}
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "cut texts to this many tokens (null: the model's, else 8192)"},
    )

    def __post_init__(self) -> None:
        require(bool(self.name), "model.name must not be empty")
        require(self.max_length is None or self.max_length >= 1, "model.max_length must be >= 1")
        require(
            self.dtype in (None, "float32", "bfloat16", "float16"),
            f"model.dtype {self.dtype!r} is not float32, bfloat16 or float16",
        )


@dataclass
class ActorPoolSection:
    """The Ray Data actor pool that holds the model."""

    num_actors: int = field(default=1, metadata={"help": "actors holding a model copy"})
    # On a CPU machine with 2 cores, actors taking a whole CPU each starve the read tasks
    # and the job hangs: half a CPU leaves room for reading and writing.
    cpus_per_actor: float = 0.5
    gpus_per_actor: float = field(default=1.0, metadata={"help": "used when device is cuda"})
    micro_batch_size: int = field(default=32, metadata={"help": "inputs per forward pass"})
    # Rows handed to an actor per call; sorting by length happens within this window.
    rows_per_call: int = 256
    sort_by_length: bool = True
    cpu_threads: int | None = field(
        default=None, metadata={"help": "CPU actors: torch threads (default: cores/actors)"}
    )
    # Custom Ray resources each actor asks for, e.g. {judge_node: 1} with nodes started by
    # `ray start --resources='{"judge_node": 1}'`: the actors go to those nodes only.
    resources: dict[str, float] = field(
        default_factory=dict, metadata={"help": "custom Ray resources per actor"}
    )

    def __post_init__(self) -> None:
        require(self.num_actors >= 1, "compute.num_actors must be >= 1")
        require(self.cpus_per_actor > 0, "compute.cpus_per_actor must be > 0")
        require(self.gpus_per_actor >= 0, "compute.gpus_per_actor must be >= 0")
        require(self.micro_batch_size >= 1, "compute.micro_batch_size must be >= 1")
        require(
            self.rows_per_call >= self.micro_batch_size,
            "compute.rows_per_call must be >= compute.micro_batch_size",
        )
        require(
            all(v > 0 for v in self.resources.values()),
            "compute.resources values must be > 0",
        )


@dataclass
class RaySection:
    """Where to run: an existing cluster (address, or RAY_ADDRESS / `ray job submit`) or a
    local one started by the job."""

    address: str | None = field(default=None, metadata={"help": "e.g. ray://host:10001"})
    num_cpus: int | None = field(default=None, metadata={"help": "local cluster only"})


@dataclass(repr=False)  # S3Options' repr, which hides the secrets
class StorageSection(S3Options):
    """S3 connection settings (``None``: from the ``AWS_*`` variables) and ``root``, the
    folder that relative output paths resolve against (``UNIEMBED_STORAGE_ROOT``)."""

    root: str | None = field(
        default=None,
        metadata={
            "help": "s3://bucket/prefix or an absolute shared path that relative outputs "
            "(and inputs not found in the working dir) resolve against; "
            "env UNIEMBED_STORAGE_ROOT"
        },
    )


__all__ = ["ActorPoolSection", "ModelSection", "RaySection", "StorageSection"]
