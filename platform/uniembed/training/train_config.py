"""Configs of the train jobs (``jobs/distill.py`` and ``jobs/tune.py``).

Defaults are the recipe's (DESIGN §1): LoRA r 16, alpha 64, dropout 0.1 with DoRA, lr 1e-4
with linear warmup and decay, temperature 0.02. The tests and the CPU configs shrink the
steps and batch sizes, never the meaning of a field.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Literal

from uniembed.config import require
from uniembed.losses import LOSSES
from uniembed.sections import ModelSection, RaySection, StorageSection

TUNE_FORMATS = ("mined", "unime_v2", "mmeb_train")
RECIPE_SWITCHES = (
    "hardness_alpha",
    "learn_temperature",
    "fn_filter",
    "focal_gamma",
    "mix_negatives",
    "mix_lambda",
)
DISTILL_PROMPT = "{text}\nSummarize the above sentences in one word."


@dataclass
class ScalingSection:
    """How many Ray Train workers, on what, in which precision."""

    num_workers: int = field(default=1, metadata={"help": "Ray Train workers (ranks)"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker when true"})
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = field(default=1.0, metadata={"help": "CPUs reserved per worker"})
    # Ray sets OMP_NUM_THREADS to a worker's whole CPUs (1 for 0.5): on CPU that leaves
    # cores idle while the step is pure compute. 0: the node's cores / its workers.
    cpu_threads: int = field(
        default=0, metadata={"help": "torch threads per CPU worker (0: cores / local workers)"}
    )
    precision: Literal["fp32", "bf16"] = field(
        default="fp32", metadata={"help": "bf16: autocast forward, fp32 master weights"}
    )
    # Custom Ray resources per worker, e.g. {trainer_node: 1}: workers go only to nodes that
    # offer them (`ray start --resources=...`); a lost node's workers restart on another.
    resources: dict[str, float] = field(
        default_factory=dict, metadata={"help": "custom Ray resources per worker"}
    )
    niceness: int | None = field(
        default=0,
        metadata={
            "help": "the train workers' nice value (Ray starts workers at 15, which starves "
            "training on a busy machine); null keeps Ray's"
        },
    )

    def __post_init__(self) -> None:
        require(self.num_workers >= 1, "scaling.num_workers must be >= 1")
        require(all(v > 0 for v in self.resources.values()), "scaling.resources values must be > 0")
        require(self.gpus_per_worker > 0, "scaling.gpus_per_worker must be > 0")
        require(self.cpus_per_worker > 0, "scaling.cpus_per_worker must be > 0")
        require(self.cpu_threads >= 0, "scaling.cpu_threads must be >= 0")


@dataclass
class LoraSection:
    """Parameter-efficient tuning of the language model (peft)."""

    enabled: bool = field(default=True, metadata={"help": "false: full fine-tuning of the LM"})
    r: int = 16
    alpha: int = 64
    dropout: float = 0.1
    dora: bool = field(default=True, metadata={"help": "weight-decomposed LoRA (DoRA)"})
    top_layers: int = field(
        default=0,
        metadata={
            "help": "adapt only the last N decoder/encoder layers (0: all); backward then "
            "stops at the lowest adapted layer, which cuts a CPU step's cost"
        },
    )

    def __post_init__(self) -> None:
        require(self.r >= 1, "lora.r must be >= 1")
        require(self.top_layers >= 0, "lora.top_layers must be >= 0")
        require(self.alpha >= 1, "lora.alpha must be >= 1")
        require(0.0 <= self.dropout < 1.0, "lora.dropout must be in [0, 1)")


@dataclass
class OptimSection:
    """Optimiser, schedule and batch."""

    max_steps: int = field(default=2000, metadata={"help": "optimizer steps in the whole run"})
    batch_size: int = field(default=512, metadata={"help": "global batch (all workers)"})
    lr: float = 1e-4
    warmup_steps: int = 200
    weight_decay: float = 0.0
    max_grad_norm: float = field(default=1.0, metadata={"help": "0 disables clipping"})
    seed: int = 0
    grad_cache_chunk: int = field(
        default=0, metadata={"help": "GradCache chunk size (rows per forward); 0: off"}
    )

    def __post_init__(self) -> None:
        require(self.max_steps >= 1, "train.max_steps must be >= 1")
        require(self.batch_size >= 1, "train.batch_size must be >= 1")
        require(self.lr > 0, "train.lr must be > 0")
        require(self.warmup_steps >= 0, "train.warmup_steps must be >= 0")
        require(self.max_grad_norm >= 0, "train.max_grad_norm must be >= 0")
        require(self.grad_cache_chunk >= 0, "train.grad_cache_chunk must be >= 0")


@dataclass
class CheckpointSection:
    """Where the run lives and how often it is saved."""

    storage_path: str = field(
        default="outputs/train", metadata={"help": "local folder or s3://bucket/prefix"}
    )
    name: str = field(default="run", metadata={"help": "run name; the same name resumes"})
    every_steps: int = field(default=100, metadata={"help": "checkpoint every N steps"})
    # A Ray Train report waits until the controller has taken the previous one: reported
    # every step, a CPU step of ~1.5 s spent a quarter of its time waiting there.
    report_every_s: float = field(
        default=10.0,
        metadata={
            "help": "seconds between Ray Train metric reports that carry no checkpoint "
            "(metrics.csv, MLflow and the Ray gauges still get every step); 0: every step"
        },
    )
    num_to_keep: int = 2
    max_failures: int = field(default=3, metadata={"help": "worker-group restarts allowed"})
    export: bool = field(default=True, metadata={"help": "export a model folder at the end"})

    def __post_init__(self) -> None:
        require(bool(self.storage_path), "checkpoint.storage_path must not be empty")
        require(bool(self.name) and "/" not in self.name, "checkpoint.name must be a plain name")
        require(self.every_steps >= 1, "checkpoint.every_steps must be >= 1")
        require(self.report_every_s >= 0, "checkpoint.report_every_s must be >= 0")
        require(self.num_to_keep >= 1, "checkpoint.num_to_keep must be >= 1")
        require(self.max_failures >= -1, "checkpoint.max_failures must be >= -1 (-1: forever)")


@dataclass
class DebugSection:
    """Test-only knobs. Never set these in a production config."""

    fail_at_step: int = field(
        default=0, metadata={"help": "kill a worker once when it reaches this step (0: never)"}
    )
    fail_rank: int = field(default=1, metadata={"help": "the rank that fail_at_step kills"})
    step_delay_s: float = field(
        default=0.0, metadata={"help": "sleep after every step (fault tests: a slower run)"}
    )
    record_batches: bool = field(
        default=False, metadata={"help": "keep the ids trained per step in the checkpoint"}
    )


@dataclass
class TuneLossSection:
    """Stage-2 loss, chosen by name from ``uniembed.losses.LOSSES``."""

    name: str = field(
        default="soft_label",
        metadata={"help": "a key of uniembed.losses.LOSSES", "choices": tuple(LOSSES)},
    )
    temperature: float = 0.02
    num_negatives: int = field(
        default=8, metadata={"help": "unime: in-batch top-k; others: mined negatives used"}
    )
    margin: float = field(default=0.1, metadata={"help": "unime/rzen false-negative margin"})
    # Recipe switches of one loss each; null keeps that loss's own default.
    hardness_alpha: float | None = field(
        default=None, metadata={"help": "rzen: negatives' logit bias alpha*sg(sim) (0: off)"}
    )
    learn_temperature: bool | None = field(
        default=None, metadata={"help": "rzen: train the temperature (log space)"}
    )
    fn_filter: bool | None = field(
        default=None, metadata={"help": "rzen: drop false negatives (margin, duplicates)"}
    )
    focal_gamma: float | None = field(
        default=None, metadata={"help": "kalm: (1 - p)^gamma row weights (0: off)"}
    )
    mix_negatives: int | None = field(
        default=None, metadata={"help": "kalm: synthetic mixed negatives per row (0: off)"}
    )
    mix_lambda: float | None = field(
        default=None, metadata={"help": "kalm: weight of the hardest negative in a mix"}
    )

    def __post_init__(self) -> None:
        require(self.temperature > 0, "loss.temperature must be > 0")
        require(self.num_negatives >= 0, "loss.num_negatives must be >= 0")
        require(
            self.name in LOSSES, f"loss.name must be one of {sorted(LOSSES)}, got {self.name!r}"
        )
        accepted = inspect.signature(LOSSES[self.name].__init__).parameters
        for key in RECIPE_SWITCHES:
            require(
                getattr(self, key) is None or key in accepted,
                f"loss.{key} is not a setting of loss {self.name} (set it to null)",
            )
        least = LOSSES[self.name].min_negatives
        require(
            self.num_negatives >= least,
            f"loss.num_negatives must be >= {least} for loss {self.name}",
        )


@dataclass
class DistillLossSection:
    """Stage-1 KL of in-batch similarity distributions."""

    temperature: float = 0.02
    average: bool = field(default=True, metadata={"help": "mean over rows instead of sum"})
    exclude_self: bool = False

    def __post_init__(self) -> None:
        require(self.temperature > 0, "loss.temperature must be > 0")


@dataclass
class TeacherSection:
    """Stage-1 teacher: a model run on the fly, or embeddings of an embed job."""

    model: str | None = field(default="minilm", metadata={"help": "on-the-fly teacher model"})
    embeddings: str | None = field(
        default=None, metadata={"help": "embed-job output (Parquet id, embedding)"}
    )

    def __post_init__(self) -> None:
        require(
            (self.model is None) != (self.embeddings is None),
            "teacher: set exactly one of teacher.model and teacher.embeddings",
        )


@dataclass
class PromptSection:
    """Prompt template the student is trained with; written to the export's uniembed.json."""

    text_template: str | None = field(
        default=None, metadata={"help": "e.g. '{text}\\nSummary above sentence in one word:'"}
    )
    max_length: int | None = field(default=128, metadata={"help": "truncate text inputs"})


@dataclass
class SamplerSection:
    """How a rank's rows are cut into batches (``training/sampler.py``)."""

    name: Literal["random", "task_homogeneous"] = field(
        default="random", metadata={"help": "task_homogeneous: one task per batch (CoDiEmb)"}
    )
    task_field: str = field(
        default="query_instruction", metadata={"help": "the row column naming a row's task"}
    )


@dataclass
class PoolingSection:
    """How the student pools tokens; written to the export's uniembed.json and config.json."""

    mode: Literal["last", "mean"] | None = field(
        default=None, metadata={"help": "null: the family's (last for decoders, mean encoders)"}
    )
    attention: Literal["causal", "bidirectional"] = field(
        default="causal",
        metadata={"help": "bidirectional: decoder students attend both ways (KaLM-V2)"},
    )

    def __post_init__(self) -> None:
        require(
            self.attention == "causal" or self.mode == "mean",
            "pooling.attention=bidirectional goes with pooling.mode=mean (set both)",
        )


@dataclass
class TuneConfig:
    """``jobs/tune.py``: stage-2 contrastive tuning on mined rows."""

    input: str = field(default="", metadata={"help": "training rows (file or folder URI)"})
    format: Literal["mined", "unime_v2", "mmeb_train"] = "mined"
    model: ModelSection = field(default_factory=lambda: ModelSection(name="tiny-qwen2-vl"))
    lora: LoraSection = field(default_factory=LoraSection)
    loss: TuneLossSection = field(default_factory=TuneLossSection)
    train: OptimSection = field(default_factory=OptimSection)
    sampler: SamplerSection = field(default_factory=SamplerSection)
    prompt: PromptSection = field(default_factory=PromptSection)
    pooling: PoolingSection = field(default_factory=PoolingSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    ray: RaySection = field(default_factory=RaySection)
    storage: StorageSection = field(default_factory=StorageSection)
    debug: DebugSection = field(default_factory=DebugSection)

    def __post_init__(self) -> None:
        require(bool(self.input), "input: the training rows must be given (--input URI)")
        check_batch(self.train, self.scaling)


@dataclass
class DistillConfig:
    """``jobs/distill.py``: stage-1 textual knowledge distillation."""

    input: str = field(default="", metadata={"help": "texts: JSONL/Parquet with id, text"})
    model: ModelSection = field(default_factory=lambda: ModelSection(name="tiny-text-lm"))
    teacher: TeacherSection = field(default_factory=TeacherSection)
    lora: LoraSection = field(default_factory=LoraSection)
    loss: DistillLossSection = field(default_factory=DistillLossSection)
    train: OptimSection = field(default_factory=OptimSection)
    prompt: PromptSection = field(
        default_factory=lambda: PromptSection(text_template=DISTILL_PROMPT)
    )
    pooling: PoolingSection = field(default_factory=PoolingSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    ray: RaySection = field(default_factory=RaySection)
    storage: StorageSection = field(default_factory=StorageSection)
    debug: DebugSection = field(default_factory=DebugSection)

    def __post_init__(self) -> None:
        require(bool(self.input), "input: the texts must be given (--input URI)")
        check_batch(self.train, self.scaling)


def check_batch(train: OptimSection, scaling: ScalingSection) -> None:
    """Every rank takes the same share of ``train.batch_size``."""
    require(
        train.batch_size % scaling.num_workers == 0,
        f"train.batch_size {train.batch_size} must be divisible by scaling.num_workers "
        f"{scaling.num_workers} (every rank takes the same share)",
    )


TrainConfig = TuneConfig | DistillConfig
