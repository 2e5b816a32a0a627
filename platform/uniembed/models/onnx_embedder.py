"""ONNX Runtime as the CPU forward pass of a text-encoder embedder (BERT, MiniLM, ...).

The encoder is exported to ONNX once, from the loaded torch model, into the model cache
(``$UNIEMBED_CACHE/models/onnx-<key>``, keyed by the weights' files, torch and
transformers versions); later loads reuse it. Prompts, tokenisation, truncation and
pooling stay those of :class:`~uniembed.models.transformer_embedder.TransformerEmbedder`:
only the encoder's forward pass runs in ONNX Runtime, whose fused CPU kernels ran
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

import numpy as np
import torch

from uniembed.models.cache import cached_folder
from uniembed.models.inputs import EmbedInput
from uniembed.models.pooling import pool_and_normalize
from uniembed.models.transformer_embedder import TransformerEmbedder

OPSET = 17
MODEL_FILE = "encoder.onnx"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")


def onnx_runtime_available() -> bool:
    """Whether ``onnxruntime`` can be imported here."""
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_unsupported_reason(embedder: Any) -> str | None:
    """Why ``embedder`` cannot run on ONNX Runtime, or None when it can: a text encoder
    (``encoder`` family) loaded as a :class:`TransformerEmbedder` on the CPU."""
    if not isinstance(embedder, TransformerEmbedder):
        return f"{type(embedder).__name__} is not a transformers embedder"
    if embedder.family.kind != "encoder":
        return f"model {embedder.name} is a {embedder.family.kind}, not a text encoder"
    if next(embedder.model.parameters()).device.type != "cpu":
        return "the model is not on the CPU"
    if not onnx_runtime_available():
        return "onnxruntime is not installed"
    return None


class _Encoder(torch.nn.Module):
    """The encoder as ONNX sees it: token tensors in, last hidden states out."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors))).last_hidden_state


def _input_names(embedder: TransformerEmbedder) -> list[str]:
    sample = embedder.encode([EmbedInput(text="a b"), EmbedInput(text="a")])
    return [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]


def cache_key(embedder: TransformerEmbedder) -> str:
    """What the exported file depends on: the model folder's weight and config files
    (name, size, mtime), the exporter's versions and the opset."""
    import transformers

    folder = Path(embedder.model.name_or_path).resolve()
    files = sorted(
        (p.name, p.stat().st_size, int(p.stat().st_mtime))
        for p in folder.glob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )
    parts = [str(folder), files, torch.__version__, transformers.__version__, OPSET]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def export_encoder(embedder: TransformerEmbedder, folder: Path) -> None:
    """Write ``folder/encoder.onnx``: the encoder with dynamic batch and sequence axes."""
    names = _input_names(embedder)
    sample = embedder.encode([EmbedInput(text="an example sentence"), EmbedInput(text="one")])
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
    """A :class:`TransformerEmbedder` whose forward pass runs in ONNX Runtime.

    Built by :func:`to_onnx`; the torch model is kept for its config and for
    :meth:`features` with autograd (training never uses this class).
    """

    backend = "onnx"

    def __init__(self, base: TransformerEmbedder, session: Any, names: list[str]) -> None:
        super().__init__(base.name, base.model, base.tokenizer, base.processor, base.settings)
        self.session = session
        self.input_names = names

    def hidden_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final-layer hidden states (n, seq, hidden), computed by ONNX Runtime."""
        feed = {name: batch[name].cpu().numpy() for name in self.input_names}
        (hidden,) = self.session.run(["hidden"], feed)
        return torch.from_numpy(hidden)

    def embed(self, inputs: Sequence[EmbedInput]) -> np.ndarray:
        """Embed ``inputs`` in one ONNX Runtime pass: (n, dim) float32, unit rows."""
        if len(inputs) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = self.encode(inputs)
        with torch.inference_mode():
            hidden = self.hidden_states(batch)
            vectors = pool_and_normalize(hidden, batch["attention_mask"], self.settings.pooling)
        return vectors.numpy().astype(np.float32, copy=False)


def to_onnx(embedder: TransformerEmbedder, threads: int) -> OnnxEmbedder:
    """``embedder`` running on ONNX Runtime with ``threads`` intra-op threads, its encoder
    exported to the model cache on first use.

    Raises:
        ValueError: the embedder cannot run on ONNX Runtime (the reason is in the message).
    """
    reason = onnx_unsupported_reason(embedder)
    if reason is not None:
        raise ValueError(f"ONNX Runtime backend: {reason}")
    import onnxruntime as ort

    folder = cached_folder(f"onnx-{cache_key(embedder)}", lambda tmp: export_encoder(embedder, tmp))
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
    names = [i.name for i in session.get_inputs()]
    return OnnxEmbedder(embedder, session, names)
