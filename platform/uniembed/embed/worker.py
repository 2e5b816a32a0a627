"""The Ray Data actor that holds one embedder and embeds batches of item rows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.images import DEFAULT_MAX_PIXELS, ImageError, load_image
from uniembed.models import EmbedInput
from uniembed.models.micro_batches import Embedded, embed_micro_batches
from uniembed.models.onnx_embedder import load_embedder_on
from uniembed.observe.live import report
from uniembed.observe.names import stage_of_instance

STAGE = "embed"
TOKENS = "tokens"  # tokens the row took
PADDED_TOKENS = "padded_tokens"  # its share of the padded batch (= the batch's max length)
TRUNCATED = "truncated"  # the row's text was cut to the model's max tokens


@dataclass(frozen=True)
class WorkerOptions:
    """What every embed actor needs; picklable, shipped to the actors."""

    model: str
    device: str = "cpu"
    dtype: str | None = None
    pooling: str | None = None
    max_length: int | None = None  # text tokens (None: the model's own limit)
    micro_batch_size: int = 32
    sort_by_length: bool = True
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    s3: storage.S3Options | None = None
    # CPU only: intra-op threads per actor. Ray sets OMP_NUM_THREADS=1 for actors with
    # fractional CPUs, which would leave cores idle while reads are cheap; None shares the
    # node's cores among the actors.
    cpu_threads: int | None = None
    num_actors: int = 1
    # The forward pass: auto (ONNX Runtime for text encoders on CPU in float32, else
    # torch), torch, or onnx (refused where it does not apply); see models.onnx_embedder.
    backend: str = "auto"

    def threads(self, cores: int | None = None) -> int:
        """Intra-op threads of one CPU actor: ``cpu_threads``, else the node's cores shared
        among the actors (at least one), so the actors never ask for more threads than
        there are cores."""
        cores = cores if cores is not None else os.cpu_count() or 1
        return self.cpu_threads or max(1, cores // self.num_actors)


def output_schema() -> pa.Schema:
    """Rows leaving the worker: embedding (null on error), error, and token accounting."""
    return pa.schema(
        [
            pa.field(S.ID, pa.string()),
            pa.field(S.EMBEDDING, pa.list_(pa.float32())),
            pa.field(S.SOURCE, pa.string()),
            pa.field(S.STAGE, pa.string()),
            pa.field(S.ERROR, pa.string()),
            pa.field(TOKENS, pa.int64()),
            pa.field(PADDED_TOKENS, pa.int64()),
            pa.field(TRUNCATED, pa.bool_()),
        ]
    )


def vector_column(rows: list[Embedded | None]) -> pa.Array:
    """The ``embedding`` column: each row's vector as a float32 list, null where the row
    has none; built from one stacked array (no Python floats)."""
    import numpy as np

    vectors = [r.vector for r in rows if r is not None]
    dim = vectors[0].shape[0] if vectors else 0
    lengths = np.array([0 if r is None else dim for r in rows], dtype=np.int32)
    offsets = np.concatenate([np.zeros(1, np.int32), np.cumsum(lengths, dtype=np.int32)])
    values = np.concatenate(vectors) if vectors else np.zeros(0, np.float32)
    missing = pa.array([r is None for r in rows], pa.bool_())
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(values.astype(np.float32, copy=False)), mask=missing
    )


class EmbedWorker:
    """Callable class for ``Dataset.map_batches``: loads the model once per actor."""

    def __init__(self, options: WorkerOptions) -> None:
        storage.configure(options.s3)
        self.options = options
        self.embedder = load_embedder_on(
            options.model,
            options.backend,
            device=options.device,
            threads=options.threads(),
            dtype=options.dtype,
            pooling=options.pooling,
            max_length=options.max_length,
        )

    def _prepare(self, row: dict[str, Any]) -> EmbedInput:
        rid = row[S.ID]
        image = load_image(
            row[S.IMAGE], row[S.IMAGE_URI], record=rid, max_pixels=self.options.max_image_pixels
        )
        text = row[S.TEXT]
        if not text and image is None:
            raise ValueError(f"record {rid}: has neither text nor image")
        if image is not None and not self.embedder.supports_images:
            raise ValueError(f"record {rid}: model {self.embedder.name} cannot embed images")
        inp = EmbedInput(text=text or None, image=image, instruction=row[S.INSTRUCTION] or None)
        fit = getattr(self.embedder, "fit", None)  # cuts long texts, counted in the summary
        return fit(inp) if fit is not None else inp

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        n = len(rows)
        embeddings: list[Embedded | None] = [None] * n
        errors: list[str | None] = [r.get(S.ERROR) for r in rows]
        stages: list[str | None] = ["read" if e else None for e in errors]
        tokens = [0] * n
        padded = [0] * n
        truncated = [False] * n
        inputs: dict[int, EmbedInput] = {}
        for i, row in enumerate(rows):
            if errors[i]:
                continue
            try:
                inputs[i] = self._prepare(row)
            except (ImageError, ValueError) as e:
                errors[i], stages[i] = str(e), STAGE
                continue
            truncated[i] = inputs[i].text != row[S.TEXT] and bool(row[S.TEXT])
        results = embed_micro_batches(
            self.embedder,
            list(inputs.values()),
            self.options.micro_batch_size,
            self.options.sort_by_length,
        )
        for i, res in zip(inputs, results, strict=True):
            if isinstance(res, Exception):
                errors[i], stages[i] = f"record {rows[i][S.ID]}: {res}", STAGE
                continue
            embeddings[i] = res
            tokens[i], padded[i] = res.tokens, res.padded_tokens
        report(stage_of_instance(self), done=n)  # live progress per call: embed/embed ...
        return pa.Table.from_pydict(
            {
                S.ID: [r[S.ID] for r in rows],
                S.EMBEDDING: vector_column(embeddings),
                S.SOURCE: [r.get(S.SOURCE) for r in rows],
                S.STAGE: stages,
                S.ERROR: errors,
                TOKENS: tokens,
                PADDED_TOKENS: padded,
                TRUNCATED: [t and e is None for t, e in zip(truncated, errors, strict=True)],
            },
            schema=output_schema(),
        )
