"""The embed pipeline: items in, L2-normalised embeddings out, on a Ray Data actor pool.

    read (tasks) -> EmbedWorker (actor pool, one model each) -> shard writer (tasks)

Output folder layout::

    embeddings/part-*.parquet   id, embedding, model, dim
    quarantine/part-*.parquet   id, stage, reason, source of every record not embedded
    index.faiss (+ .json, .ids.json)   optional FAISS index over the embeddings
    _SUCCESS.json               the run summary; written last
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from ray.data import ActorPoolStrategy

from uniembed import storage
from uniembed.data import schema as S
from uniembed.pipelines import shards
from uniembed.pipelines.embed_config import EmbedConfig
from uniembed.pipelines.embed_worker import PADDED_TOKENS, TOKENS, EmbedWorker, WorkerOptions
from uniembed.pipelines.read import read_items
from uniembed.pipelines.runtime import actor_resources, init_ray, resolve_device
from uniembed.sections import ActorPoolSection, ModelSection, RaySection

EMBEDDINGS_DIR = "embeddings"
QUARANTINE_DIR = "quarantine"
INDEX_FILE = "index.faiss"


@dataclass
class EmbedSummary:
    """What a run did; also written as the output's ``_SUCCESS.json``."""

    input: str
    output: str
    model: str
    dim: int
    rows_in: int
    rows_out: int
    rows_quarantined: int
    shards: int
    seconds: float
    items_per_s: float
    padding_fraction: float
    index: str | None = None

    def line(self) -> str:
        return (
            f"embedded {self.rows_out}/{self.rows_in} rows "
            f"({self.rows_quarantined} quarantined) with {self.model} (dim {self.dim}) "
            f"in {self.seconds:.1f}s = {self.items_per_s:.1f} items/s; "
            f"padding {self.padding_fraction:.1%}; output {self.output}"
        )


def check_model(name: str) -> None:
    """Fail fast, in the driver, on a model name that resolves to nothing (reads configs
    only; the weights are loaded by the actors)."""
    from uniembed.models.registry import inspect_model

    inspect_model(name)


def prepare_output(output: str, overwrite: bool) -> None:
    """Check the output is reachable and clear what a previous run left there."""
    storage.check_reachable(output)
    if shards.read_manifest(output) is not None and not overwrite:
        raise FileExistsError(f"output {output} already holds a finished run (overwrite=false)")
    for sub in (EMBEDDINGS_DIR, QUARANTINE_DIR, shards.MANIFEST, INDEX_FILE):
        storage.delete(storage.join(output, sub))


def _projector(model_name: str):  # noqa: ANN202 - a Ray UDF factory
    def project(good: pa.Table) -> pa.Table:
        emb = good[S.EMBEDDING].combine_chunks()
        dims = pc.list_value_length(emb).cast(pa.int32())
        return pa.table(
            {
                S.ID: good[S.ID],
                S.EMBEDDING: emb,
                S.MODEL: pa.array([model_name] * len(good), pa.string()),
                S.DIM: dims,
            },
            schema=S.embedding_schema(),
        )

    return project


def _token_stats(batch: pa.Table) -> dict[str, Any]:
    return {
        TOKENS: int(pc.sum(batch[TOKENS]).as_py() or 0),
        PADDED_TOKENS: int(pc.sum(batch[PADDED_TOKENS]).as_py() or 0),
    }


def embed_dataset(cfg: EmbedConfig, device: str):  # noqa: ANN201 - ray.data.Dataset
    """The lazy dataset of worker outputs (id, embedding, source, stage, error, tokens)."""
    options = WorkerOptions(
        model=cfg.model.name,
        device=device,
        dtype=cfg.model.dtype,
        pooling=cfg.model.pooling,
        micro_batch_size=cfg.compute.micro_batch_size,
        sort_by_length=cfg.compute.sort_by_length,
        s3=storage.get_options(),
        cpu_threads=cfg.compute.cpu_threads,
        num_actors=cfg.compute.num_actors,
    )
    items = read_items(cfg.input, cfg.format)
    return items.map_batches(
        EmbedWorker,
        fn_constructor_args=(options,),
        compute=ActorPoolStrategy(size=cfg.compute.num_actors),
        batch_size=cfg.compute.rows_per_call,
        batch_format="pyarrow",
        **actor_resources(cfg.compute, device),
    )


def run_embed(cfg: EmbedConfig) -> EmbedSummary:
    """Run the embed pipeline to completion and write its outputs; returns the summary."""
    if any(v is not None for v in vars(cfg.storage).values()):
        storage.configure(storage.get_options().merged(cfg.storage))
    check_model(cfg.model.name)
    prepare_output(cfg.output, cfg.overwrite)
    init_ray(cfg.ray)
    device = resolve_device(cfg.model)
    start = time.perf_counter()
    out_dir = storage.join(cfg.output, EMBEDDINGS_DIR)
    q_dir = storage.join(cfg.output, QUARANTINE_DIR)
    writer = shards.shard_writer(
        out_dir, q_dir, _projector(cfg.model.name), _token_stats, storage.get_options()
    )
    stats = (
        embed_dataset(cfg, device)
        .map_batches(writer, batch_size=None, batch_format="pyarrow", num_cpus=0.25)
        .take_all()
    )
    seconds = time.perf_counter() - start
    rows_in = sum(s["rows"] for s in stats)
    rows_out = sum(s["ok"] for s in stats)
    tokens = sum(s[TOKENS] for s in stats)
    padded = sum(s[PADDED_TOKENS] for s in stats)
    dim = _first_dim(out_dir) if rows_out else 0
    summary = EmbedSummary(
        input=cfg.input,
        output=cfg.output,
        model=cfg.model.name,
        dim=dim,
        rows_in=rows_in,
        rows_out=rows_out,
        rows_quarantined=sum(s["quarantined"] for s in stats),
        shards=sum(1 for s in stats if s["ok"]),
        seconds=round(seconds, 3),
        items_per_s=round(rows_out / seconds, 2) if seconds > 0 else 0.0,
        padding_fraction=round(1 - tokens / padded, 4) if padded else 0.0,
    )
    if cfg.index.kind != "none" and rows_out:
        summary.index = build_index_file(cfg, out_dir)
    shards.write_manifest(cfg.output, summary.__dict__)
    return summary


def _first_dim(out_dir: str) -> int:
    first = storage.list_files(out_dir, suffix=".parquet")[0]
    return int(storage.read_parquet(first, columns=[S.DIM])[S.DIM][0].as_py())


def read_embeddings(output: str) -> tuple[list[str], Any]:
    """The (ids, (n, dim) float32 matrix) of a finished embed output, in shard order."""
    import numpy as np

    table = storage.read_parquet(storage.join(output, EMBEDDINGS_DIR), columns=[S.ID, S.EMBEDDING])
    ids = table[S.ID].to_pylist()
    if not ids:
        return ids, np.zeros((0, 0), np.float32)
    flat = pc.list_flatten(table[S.EMBEDDING]).to_numpy()
    return ids, flat.reshape(len(ids), -1).astype(np.float32, copy=False)


def build_index_file(cfg: EmbedConfig, out_dir: str) -> str:
    """Build the configured FAISS index over the written embeddings; returns its URI."""
    from uniembed.mining import build_index, save_index

    ids, matrix = read_embeddings(cfg.output)
    index = build_index(matrix, kind=cfg.index.kind, nlist=cfg.index.nlist, nprobe=cfg.index.nprobe)
    uri = storage.join(cfg.output, INDEX_FILE)
    save_index(index, uri, ids)
    return uri


def embed_table(
    items: pa.Table,
    work_uri: str,
    *,
    model: ModelSection,
    compute: ActorPoolSection | None = None,
    ray_section: RaySection | None = None,
) -> tuple[list[str], Any, pa.Table]:
    """Embed an in-memory table of items through the embed pipeline (so it runs on the
    cluster) and read the result back: ``(ids, (n, dim) float32, quarantine table)``.

    ``items`` needs the item columns (``schema.ITEM_SCHEMA``); ``work_uri`` is a folder for
    the staged input and the output. For the evaluate and mine jobs' small-to-medium sets.
    """
    for col in (S.ID, S.TEXT, S.IMAGE, S.IMAGE_URI, S.INSTRUCTION):
        if col not in items.column_names:
            raise ValueError(f"embed_table: items table has no column {col!r}")
    staged = storage.join(work_uri, "items.parquet")
    storage.write_parquet(staged, items.select(list(S.ITEM_SCHEMA.names)).cast(S.ITEM_SCHEMA))
    out = storage.join(work_uri, "embedded")
    cfg = EmbedConfig(
        input=staged,
        output=out,
        model=model,
        compute=compute or ActorPoolSection(),
        ray=ray_section or RaySection(),
    )
    run_embed(cfg)
    ids, matrix = read_embeddings(out)
    q_dir = storage.join(out, QUARANTINE_DIR)
    quarantine = (
        storage.read_parquet(q_dir)
        if storage.exists(q_dir) and storage.list_files(q_dir, suffix=".parquet")
        else S.QUARANTINE_SCHEMA.empty_table()
    )
    return ids, matrix, quarantine
