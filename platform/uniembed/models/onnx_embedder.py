"""ONNX Runtime as the CPU forward pass of a text-encoder embedder (BERT, MiniLM, ...).

The encoder is exported to ONNX once, from the torch model, into the model cache
(``$UNIEMBED_CACHE/models/onnx-<key>``, keyed by the weights' files, torch and
transformers versions); later loads read only the tokenizer, the config and that file (no
torch model, none of its code: seconds off a replica's start). Prompts, tokenisation,
truncation and pooling stay those of
:class:`~uniembed.models.transformer_embedder.TransformerEmbedder`: only the encoder's
forward pass runs in ONNX Runtime, whose fused CPU kernels ran
all-MiniLM-L6-v2 2.3x faster than torch's eager forward on 2 cores (length-sorted batches
of 16; ``benchmarks/serve_vs_infinity.py``), with vectors equal to torch's within 1e-6.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from uniembed.models.backbone import Backbone
from uniembed.models.cache import cached_folder
from uniembed.models.families import Family
from uniembed.models.inputs import EmbedInput
from uniembed.models.registry import EmbedderParts
from uniembed.models.transformer_embedder import TransformerEmbedder

OPSET = 17
MODEL_FILE = "encoder.onnx"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def onnx_runtime_available() -> bool:
    """Whether ``onnxruntime`` can be imported here."""
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_unsupported_reason(family: Family, device: str) -> str | None:
    """Why a model of ``family`` on ``device`` cannot run on ONNX Runtime, or None when it
    can: a text encoder (``encoder`` family) on the CPU, with onnxruntime installed."""
    if family.kind != "encoder":
        return f"the model is a {family.kind}, not a text encoder"
    if device != "cpu":
        return f"the model is on {device}, not the CPU"
    if not onnx_runtime_available():
        return "onnxruntime is not installed"
    return None


BACKENDS = ("auto", "torch", "onnx")


def onnx_reason(family: Family, device: str, dtype: str | None) -> str | None:
    """:func:`onnx_unsupported_reason`, and float32 only: why ONNX Runtime does not apply
    to this model, device and dtype, or None when it does."""
    reason = onnx_unsupported_reason(family, device)
    if reason is None and dtype not in (None, "float32"):
        reason = f"it runs float32 only (dtype is {dtype})"
    return reason


def use_onnx(backend: str, reason: str | None, key: str = "backend") -> bool:
    """Whether to run the forward pass in ONNX Runtime: ``backend`` ``onnx`` or ``auto``
    where it applies (``reason`` None, from :func:`onnx_reason`), never for ``torch``.

    Raises:
        ValueError: ``onnx`` asked for where it does not apply (``key`` names the setting).
    """
    if backend not in BACKENDS:
        raise ValueError(f"{key} {backend!r} is not one of {list(BACKENDS)}")
    if backend == "torch":
        return False
    if reason is not None and backend == "onnx":
        raise ValueError(f"{key}: onnx does not apply here: {reason} (set torch)")
    return reason is None


def load_embedder_on(
    name_or_path: str,
    backend: str,
    *,
    device: str,
    threads: int,
    dtype: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    key: str = "backend",
) -> Any:
    """The embedder :func:`~uniembed.models.registry.load_embedder` loads, with its forward
    pass in ONNX Runtime on ``threads`` threads where ``backend`` asks for it (see
    :func:`use_onnx`; torch, which then only pools, gets one), else on torch with
    ``threads`` threads on the CPU. MLLMs, decoders, GPUs and dtypes other than float32
    stay on torch under ``auto``.

    Raises:
        ValueError: ``backend: onnx`` where it does not apply, or a bad backend name.
    """
    from uniembed.models.registry import inspect_model, load_embedder

    family = inspect_model(name_or_path).family
    if use_onnx(backend, onnx_reason(family, device, dtype), key):
        # torch only pools here: one thread, so that no idle OpenMP thread spins beside
        # ONNX Runtime's on the same cores
        torch.set_num_threads(1)
        return load_onnx_embedder(name_or_path, threads, pooling=pooling, max_length=max_length)
    if device == "cpu":
        torch.set_num_threads(threads)
    return load_embedder(
        name_or_path, device=device, dtype=dtype, pooling=pooling, max_length=max_length
    )


class _Encoder(torch.nn.Module):
    """The encoder as ONNX sees it: token tensors in, last hidden states out."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors))).last_hidden_state


def cache_key(folder: str) -> str:
    """What an export depends on: the model folder's weight and config files (name, size,
    mtime), the exporter's versions and the opset."""
    import transformers

    path = Path(folder).resolve()
    files = sorted(
        (p.name, p.stat().st_size, int(p.stat().st_mtime))
        for p in path.glob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )
    parts = [str(path), files, torch.__version__, transformers.__version__, OPSET]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def export_encoder(embedder: TransformerEmbedder, folder: Path) -> None:
    """Write ``folder/encoder.onnx``: the torch encoder with dynamic batch and sequence
    axes, taking the token tensors its tokenizer makes."""
    sample = embedder.encode([EmbedInput(text="an example sentence"), EmbedInput(text="one")])
    names = [name for name in INPUT_NAMES if name in sample]
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "hidden"]}
    model = embedder.model
    was_training = model.training
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python-side constants
            torch.onnx.export(
                _Encoder(model, names).eval(),
                tuple(sample[name] for name in names),
                str(folder / MODEL_FILE),
                input_names=names,
                output_names=["hidden"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        model.train(was_training)  # the exporter leaves its module in training mode


class OnnxEmbedder(TransformerEmbedder):
    """A text-encoder :class:`TransformerEmbedder` whose forward pass is an ONNX Runtime
    session; no torch model is loaded (``model`` is None). ``embed`` is the parent's: only
    tokenising (no device move) and the hidden states differ. Built by
    :func:`load_onnx_embedder`."""

    backend = "onnx"

    def __init__(self, name: str, parts: EmbedderParts, session: Any) -> None:
        Backbone.__init__(self, name, None, parts.tokenizer, None, parts.settings)  # type: ignore[arg-type]
        self.family = parts.settings.family
        self.dim = int(parts.source.config.get_text_config().hidden_size)
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]

    def encode(self, inputs: Sequence[EmbedInput]) -> dict[str, torch.Tensor]:
        """Token tensors (n, seq) for a batch (right-padded)."""
        batch = self._tokenize_text(self.prompts(inputs), "np", self.settings.max_length)
        return {name: torch.from_numpy(batch[name]) for name in batch}

    def hidden_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final-layer hidden states (n, seq, hidden), computed by ONNX Runtime."""
        feed = {name: batch[name].numpy() for name in self.input_names}
        (hidden,) = self.session.run(["hidden"], feed)
        return torch.from_numpy(hidden)


def load_onnx_embedder(
    name_or_path: str,
    threads: int,
    *,
    pooling: str | None = None,
    max_length: int | None = None,
) -> OnnxEmbedder:
    """The embedder :func:`~uniembed.models.registry.load_embedder` would load (same
    arguments), on the CPU with its forward pass in ONNX Runtime on ``threads`` threads.
    The first load exports the encoder into the model cache; later ones load neither the
    torch model nor its code.

    Raises:
        ValueError: the model cannot run on ONNX Runtime (the reason is in the message).
    """
    from uniembed.models.registry import embedder_parts, load_embedder

    parts = embedder_parts(name_or_path, pooling=pooling, max_length=max_length)
    reason = onnx_unsupported_reason(parts.settings.family, "cpu")
    if reason is not None:
        raise ValueError(f"ONNX Runtime backend for {name_or_path}: {reason}")
    import onnxruntime as ort

    def export(tmp: Path) -> None:
        base = load_embedder(name_or_path, device="cpu", pooling=pooling, max_length=max_length)
        export_encoder(base, tmp)  # type: ignore[arg-type]

    folder = cached_folder(f"onnx-{cache_key(parts.source.folder)}", export)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: in a server the same cores parse the
    # next requests between forward passes (32 clients on 2 cores: 189-203 req/s against
    # 163-165 spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
    )
    return OnnxEmbedder(name_or_path, parts, session)
