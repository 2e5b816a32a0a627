"""The embed pipeline: items in, L2-normalised embeddings out, on a Ray Data actor pool.

    read (tasks) -> EmbedWorker (actor pool, one model each) -> shard writer (tasks)

Output folder layout::

    embeddings/part-*.parquet   id, embedding, model, dim
    quarantine/part-*.parquet   id, stage, reason, source of every record not embedded
    index.faiss (+ .json, .ids.json)   optional FAISS index over the embeddings
    _SUCCESS.json               the run summary; written last
    _OWNER.json                 marks the folder as the embed job's

Nothing is lost or clobbered: the input is checked (files, duplicate ids) before the output
is touched; a folder holding files the job did not write is refused unless ``overwrite``;
the run writes into ``_staging-<run>/`` and replaces the previous output only when it has
succeeded, and the manifest's counts are read from the files written, checked against the
rows read. A run that embedded no row does not replace an existing output (an empty or
all-bad input), unless ``allow_empty``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from ray.data import ActorPoolStrategy

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data import shards
from uniembed.data.output_guard import (
    check_not_empty,
    check_output,
    claim_output,
    first_reasons,
    naming_input,
    new_run_id,
    publish,
    staging_folder,
)
from uniembed.data.read import ReadOptions, read_items
from uniembed.data.record_files import input_files, input_root
from uniembed.data.shards import QUARANTINE_DIR
from uniembed.embed.config import EmbedConfig
from uniembed.embed.dedupe import find_duplicates
from uniembed.embed.worker import (
    PADDED_TOKENS,
    TOKENS,
    TRUNCATED,
    EmbedWorker,
    WorkerOptions,
)
from uniembed.observe.live import Watch, watch
from uniembed.observe.names import dataset_name, named
from uniembed.runtime import actor_resources, init_ray, resolve_device
from uniembed.sections import ActorPoolSection, ModelSection, RaySection

EMBEDDINGS_DIR = "embeddings"
INDEX_FILE = "index.faiss"
JOB = "embed"
# What the job writes (and may replace); anything else in the output folder is foreign.
LAYOUT = (f"{EMBEDDINGS_DIR}/part-*.parquet", f"{QUARANTINE_DIR}/part-*.parquet", f"{INDEX_FILE}*")
PUBLISHED = (
    EMBEDDINGS_DIR,
    QUARANTINE_DIR,
    INDEX_FILE,
    f"{INDEX_FILE}.json",
    f"{INDEX_FILE}.ids.json",
)


class LostRowsError(RuntimeError):
    """The rows written do not add up to the rows read: the run is not published."""


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
    rows_duplicate: int = 0  # left out under dedupe=keep_first
    rows_truncated: int = 0  # embedded with their text cut to the model's max tokens
    run_id: str = ""
    index: str | None = None

    def line(self) -> str:
        extra = f", {self.rows_duplicate} duplicate ids left out" * bool(self.rows_duplicate)
        return (
            f"embedded {self.rows_out}/{self.rows_in} rows "
            f"({self.rows_quarantined} quarantined{extra}; {self.rows_truncated} truncated) "
            f"with {self.model} (dim {self.dim}) "
            f"in {self.seconds:.1f}s = {self.items_per_s:.1f} items/s; "
            f"padding {self.padding_fraction:.1%}; output {self.output}"
        )


def check_model(name: str) -> None:
    """Fail fast, in the driver, on a model name that resolves to nothing (reads configs
    only; the weights are loaded by the actors)."""
    from uniembed.models.registry import inspect_model

    inspect_model(name)


def check_backend(options: WorkerOptions) -> None:
    """Fail fast, in the driver, on ``backend: onnx`` for a model, device or dtype it does
    not apply to (reads the model's config only)."""
    from uniembed.models.onnx_embedder import onnx_reason, use_onnx
    from uniembed.models.registry import inspect_model

    family = inspect_model(options.model).family
    use_onnx(options.backend, onnx_reason(family, options.device, options.dtype))


def prepare_output(cfg: EmbedConfig) -> list[str]:
    """Every check before the output is touched: the output is reachable, the input has
    files, and the output holds nothing the job did not write (unless ``overwrite``).
    Returns the input files."""
    storage.check_reachable(cfg.output)
    with naming_input("input"):
        return _input_files(cfg)


def _input_files(cfg: EmbedConfig) -> list[str]:
    files = input_files(cfg.input, cfg.follow_symlinks)
    check_output(cfg.output, JOB, LAYOUT, cfg.overwrite)
    return files


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
        TRUNCATED: int(pc.sum(batch[TRUNCATED].cast(pa.int64())).as_py() or 0),
    }


def embed_dataset(  # noqa: ANN201 - ray.data.Dataset
    cfg: EmbedConfig, device: str, read: ReadOptions | None = None, stage: str = "embed"
):
    """The lazy dataset of worker outputs (id, embedding, source, stage, error, tokens);
    its operators are named ``<stage>/read`` and ``<stage>/embed``."""
    options = WorkerOptions(
        model=cfg.model.name,
        device=device,
        dtype=cfg.model.dtype,
        pooling=cfg.model.pooling,
        max_length=cfg.model.max_length,
        micro_batch_size=cfg.compute.micro_batch_size,
        sort_by_length=cfg.compute.sort_by_length,
        s3=storage.get_options(),
        cpu_threads=cfg.compute.cpu_threads,
        num_actors=cfg.compute.num_actors,
        backend=cfg.backend,
    )
    check_backend(options)
    items = read_items(cfg.input, cfg.format, options=read, stage=f"{stage}/read")
    # The read of one file yields small batches that Ray Data merges into one block of the
    # whole file (blocks are cut by bytes, 128 MiB, and text rows are small): one actor would
    # then embed the file alone and nothing would reach the writer until it ended. Blocks of
    # one call's rows (a streaming repartition, no all-to-all) spread a single file over the
    # actor pool and stream results to the writer.
    items = items.repartition(target_num_rows_per_block=cfg.compute.rows_per_call)
    return items.map_batches(
        named(EmbedWorker, f"{stage}/embed"),
        fn_constructor_args=(options,),
        compute=ActorPoolStrategy(size=cfg.compute.num_actors),
        batch_size=cfg.compute.rows_per_call,
        batch_format="pyarrow",
        **actor_resources(cfg.compute, device),
    )


def run_embed(
    cfg: EmbedConfig, stage: str = "embed", expected_rows: int | None = None
) -> EmbedSummary:
    """Run the embed pipeline to completion and publish its outputs; returns the summary.
    ``stage`` names its dataset and operators (``mine/pool``: ``mine/pool/embed`` ...);
    ``expected_rows``, when the caller knows it, is the total of the live progress line."""
    if any(v is not None for v in vars(cfg.storage).values()):
        storage.configure(storage.get_options().merged(cfg.storage))
    check_model(cfg.model.name)
    files = prepare_output(cfg)
    init_ray(cfg.ray)
    device = resolve_device(cfg.model)
    read = ReadOptions(
        fmt=cfg.format,
        root=input_root(cfg.input),
        image_prefixes=tuple(cfg.image_prefixes),
        duplicates=find_duplicates(files, cfg.format, cfg.dedupe),
        dedupe=cfg.dedupe,
        follow_symlinks=cfg.follow_symlinks,
    )
    run_id = new_run_id()
    staged = staging_folder(cfg.output, run_id)
    claim_output(cfg.output, JOB)
    try:
        summary = _run_staged(cfg, device, read, run_id, staged, stage, expected_rows)
        check_not_empty(
            JOB,
            cfg.input,
            cfg.output,
            (summary.rows_in, summary.rows_out),
            PUBLISHED,
            cfg.allow_empty,
            first_reasons(storage.join(staged, QUARANTINE_DIR)),
        )
        publish(staged, cfg.output, PUBLISHED, shards.MANIFEST)
        shards.write_manifest(cfg.output, summary.__dict__)
    finally:
        storage.delete(staged)
    return summary


def _run_staged(
    cfg: EmbedConfig,
    device: str,
    read: ReadOptions,
    run_id: str,
    staged: str,
    stage: str,
    expected_rows: int | None = None,
) -> EmbedSummary:
    start = time.perf_counter()
    out_dir = storage.join(staged, EMBEDDINGS_DIR)
    q_dir = storage.join(staged, QUARANTINE_DIR)
    writer = shards.shard_writer(
        out_dir, q_dir, _projector(cfg.model.name), _token_stats, storage.get_options(), run_id
    )
    ds = embed_dataset(cfg, device, read, stage).map_batches(
        named(writer, f"{stage}/write"), batch_size=None, batch_format="pyarrow", num_cpus=0.25
    )
    ds.set_name(dataset_name(stage))
    with watch([Watch(f"{stage}/embed", "rows", "embedded", total=expected_rows)]):
        stats = ds.take_all()
    seconds = time.perf_counter() - start
    dropped = len(read.duplicates) if read.dedupe == "keep_first" else 0
    rows_in = sum(s["rows"] for s in stats) + dropped
    n_shards, rows_out = shards.count_rows(out_dir)
    _, rows_quarantined = shards.count_rows(q_dir)
    if rows_out + rows_quarantined + dropped != rows_in:
        raise LostRowsError(
            f"read {rows_in} rows but wrote {rows_out} embeddings, {rows_quarantined} "
            f"quarantined and left out {dropped} duplicates; output {cfg.output} not replaced"
        )
    tokens = sum(s[TOKENS] for s in stats)
    padded = sum(s[PADDED_TOKENS] for s in stats)
    summary = EmbedSummary(
        input=cfg.input,
        output=cfg.output,
        model=cfg.model.name,
        dim=_first_dim(out_dir) if rows_out else 0,
        rows_in=rows_in,
        rows_out=rows_out,
        rows_quarantined=rows_quarantined,
        shards=n_shards,
        seconds=round(seconds, 3),
        items_per_s=round(rows_out / seconds, 2) if seconds > 0 else 0.0,
        padding_fraction=round(1 - tokens / padded, 4) if padded else 0.0,
        rows_duplicate=dropped,
        rows_truncated=sum(s[TRUNCATED] for s in stats),
        run_id=run_id,
    )
    if cfg.index.kind != "none" and rows_out:
        build_index_file(cfg, staged)
        summary.index = storage.join(cfg.output, INDEX_FILE)
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


def build_index_file(cfg: EmbedConfig, folder: str) -> str:
    """Build the configured FAISS index over the embeddings in ``folder`` (an embed output
    or its staging folder) and write it there; returns its URI."""
    from uniembed.index import build_index, save_index

    ids, matrix = read_embeddings(folder)
    index = build_index(matrix, kind=cfg.index.kind, nlist=cfg.index.nlist, nprobe=cfg.index.nprobe)
    uri = storage.join(folder, INDEX_FILE)
    save_index(index, uri, ids)
    return uri


def embed_table(
    items: pa.Table,
    work_uri: str,
    *,
    model: ModelSection,
    compute: ActorPoolSection | None = None,
    ray_section: RaySection | None = None,
    image_prefixes: Sequence[str] = (),
    stage: str = "evaluate/embed",
) -> tuple[list[str], Any, pa.Table]:
    """Embed an in-memory table of items through the embed pipeline (so it runs on the
    cluster) and read the result back: ``(ids, (n, dim) float32, quarantine table)``.

    ``items`` needs the item columns (``schema.ITEM_SCHEMA``); ``work_uri`` is a folder for
    the staged input and the output. ``image_prefixes``: where the items' resolved image
    URIs may point (the folders their reader allowed: the staged copy lives elsewhere).
    For the evaluate and mine jobs' small-to-medium sets.
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
        image_prefixes=list(image_prefixes),
    )
    run_embed(cfg, stage)
    ids, matrix = read_embeddings(out)
    q_dir = storage.join(out, QUARANTINE_DIR)
    quarantine = (
        storage.read_parquet(q_dir)
        if storage.exists(q_dir) and storage.list_files(q_dir, suffix=".parquet")
        else S.QUARANTINE_SCHEMA.empty_table()
    )
    return ids, matrix, quarantine
