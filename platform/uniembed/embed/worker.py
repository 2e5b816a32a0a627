"""The Ray Data actor that holds one embedder and embeds batches of item rows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.images import DEFAULT_MAX_PIXELS, ImageError, load_image
from uniembed.models import EmbedInput, load_embedder
from uniembed.models.micro_batches import embed_micro_batches

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


class EmbedWorker:
    """Callable class for ``Dataset.map_batches``: loads the model once per actor."""

    def __init__(self, options: WorkerOptions) -> None:
        storage.configure(options.s3)
        self.options = options
        if options.device == "cpu":
            import torch

            cores = os.cpu_count() or 1
            torch.set_num_threads(options.cpu_threads or max(1, cores // options.num_actors))
        self.embedder = load_embedder(
            options.model,
            device=options.device,
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
        embeddings: list[list[float] | None] = [None] * n
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
            embeddings[i] = res.vector.tolist()
            tokens[i], padded[i] = res.tokens, res.padded_tokens
        return pa.Table.from_pydict(
            {
                S.ID: [r[S.ID] for r in rows],
                S.EMBEDDING: embeddings,
                S.SOURCE: [r.get(S.SOURCE) for r in rows],
                S.STAGE: stages,
                S.ERROR: errors,
                TOKENS: tokens,
                PADDED_TOKENS: padded,
                TRUNCATED: [t and e is None for t, e in zip(truncated, errors, strict=True)],
            },
            schema=output_schema(),
        )
