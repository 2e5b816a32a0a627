"""Config of the embed job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from uniembed.config import require
from uniembed.data.records import FORMATS
from uniembed.embed.dedupe import DEDUPE_POLICIES
from uniembed.sections import ActorPoolSection, ModelSection, RaySection, StorageSection


@dataclass
class IndexSection:
    """Optional FAISS index written next to the embeddings."""

    kind: Literal["none", "flat", "ivf"] = field(
        default="none", metadata={"help": "flat: exact; ivf: for large corpora"}
    )
    nlist: int | None = field(default=None, metadata={"help": "IVF lists (default ~4 sqrt(n))"})
    nprobe: int = 16


@dataclass
class EmbedConfig:
    """python jobs/embed.py --input URI --output URI --model NAME"""

    input: str = field(default="", metadata={"help": "file or folder (local or s3://)"})
    output: str = field(default="", metadata={"help": "output folder (local or s3://)"})
    format: str = field(
        default="items", metadata={"help": "items | mmeb_train | mmeb_eval | unime_v2"}
    )
    model: ModelSection = field(default_factory=ModelSection)
    compute: ActorPoolSection = field(default_factory=ActorPoolSection)
    index: IndexSection = field(default_factory=IndexSection)
    ray: RaySection = field(default_factory=RaySection)
    storage: StorageSection = field(default_factory=StorageSection)
    dedupe: str = field(
        default="quarantine",
        metadata={"help": "repeated ids: quarantine | keep_first | error (checked before work)"},
    )
    backend: Literal["auto", "torch", "onnx"] = field(
        default="auto",
        metadata={
            "help": "the forward pass: onnx (ONNX Runtime; text encoders on CPU in float32, "
            "exported once to the model cache), torch, or auto (onnx where it applies)"
        },
    )
    image_prefixes: list[str] = field(
        default_factory=list,
        metadata={"help": "folders/URIs images may come from besides the input folder"},
    )
    follow_symlinks: bool = field(
        default=False,
        metadata={"help": "read input files through folder links (loops are never followed)"},
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "let the job replace files in output it did not write (--overwrite)"},
    )
    allow_empty: bool = field(
        default=False,
        metadata={"help": "let a run that embedded no row replace an existing output"},
    )

    def __post_init__(self) -> None:
        require(bool(self.input), "input is required (--input URI)")
        require(bool(self.output), "output is required (--output URI)")
        require(self.format in FORMATS, f"format {self.format!r} is not one of {list(FORMATS)}")
        require(
            self.dedupe in DEDUPE_POLICIES,
            f"dedupe {self.dedupe!r} is not one of {list(DEDUPE_POLICIES)}",
        )
        require(all(self.image_prefixes), "image_prefixes: empty prefix")
