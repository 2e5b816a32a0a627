"""Embed pipeline throughput against a bare in-process loop over the same model and batches.

    python benchmarks/embed_throughput.py [--model minilm] [--n 5000]

Prints items/s of the Ray Data pipeline (with and without start-up) and of the bare loop,
their ratios, and the padding fraction with and without length sorting.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from uniembed.data import schema as S
from uniembed.data.demo import WORDNET_CORPUS, WORDNET_EVAL, WORDNET_QUERIES, demo_path
from uniembed.models import EmbedInput, load_embedder
from uniembed.models.micro_batches import plan_micro_batches


def demo_sentences(n: int) -> list[str]:
    """Up to ``n`` distinct real sentences from the shipped WordNet demo files."""
    seen: dict[str, None] = {}
    for name in (WORDNET_CORPUS, WORDNET_QUERIES):
        for line in Path(demo_path(name)).read_text().splitlines():
            seen.setdefault(json.loads(line)[S.TEXT], None)
    for line in Path(demo_path(WORDNET_EVAL)).read_text().splitlines():
        row = json.loads(line)
        for t in [row["qry_text"], *row["tgt_text"]]:
            seen.setdefault(t, None)
    texts = list(seen)
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} distinct demo sentences, asked for {n}")
    return texts[:n]


def padding_fraction(lengths: list[int], window: int, micro: int, sort: bool) -> float:
    real = padded = 0
    for start in range(0, len(lengths), window):
        chunk = lengths[start : start + window]
        for group in plan_micro_batches(chunk, micro, sort):
            longest = max(chunk[g] for g in group)
            real += sum(chunk[g] for g in group)
            padded += longest * len(group)
    return 1 - real / padded


def bare_loop(model: str, texts: list[str], window: int, micro: int) -> float:
    """items/s of the plain loop: same model, same windows, same sorted micro-batches."""
    embedder = load_embedder(model)
    inputs = [EmbedInput(text=t) for t in texts]
    embedder.embed(inputs[:micro])  # warm-up, as the pipeline's actors warm up on batch 1
    start = time.perf_counter()
    for w in range(0, len(inputs), window):
        chunk = inputs[w : w + window]
        lengths = [embedder.token_length(i) for i in chunk]
        for group in plan_micro_batches(lengths, micro, True):
            embedder.embed([chunk[g] for g in group])
    return len(texts) / (time.perf_counter() - start)


def _run_pipeline(path: Path, model: str, window: int, micro: int) -> tuple[int, float]:
    from ray.data import ActorPoolStrategy

    from uniembed.data.read import read_items
    from uniembed.embed.worker import EmbedWorker, WorkerOptions

    options = WorkerOptions(model=model, micro_batch_size=micro)
    start = time.perf_counter()
    ds = read_items(str(path)).map_batches(
        EmbedWorker,
        fn_constructor_args=(options,),
        compute=ActorPoolStrategy(size=1),
        batch_size=window,
        batch_format="pyarrow",
        num_cpus=0.5,
    )
    rows = sum(len(b) for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    return rows, time.perf_counter() - start


def _write_items(path: Path, texts: list[str]) -> None:
    import pyarrow.parquet as pq

    n = len(texts)
    pq.write_table(
        pa.table(
            {
                S.ID: [str(i) for i in range(n)],
                S.TEXT: texts,
                S.IMAGE: pa.nulls(n, pa.binary()),
                S.IMAGE_URI: pa.nulls(n, pa.string()),
                S.INSTRUCTION: pa.nulls(n, pa.string()),
            }
        ),
        path,
    )


def pipeline(model: str, texts: list[str], window: int, micro: int) -> tuple[float, float]:
    """(items/s including start-up, items/s with start-up excluded) of the Ray pipeline.

    Start-up (actor creation, model load, planning) is measured by running the same
    pipeline on one micro-batch first; the full run minus that time is the steady state.
    """
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        small, full = Path(tmp) / "small.parquet", Path(tmp) / "full.parquet"
        _write_items(small, texts[:micro])
        _write_items(full, texts)
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        _, startup = _run_pipeline(small, model, window, micro)
        rows, total = _run_pipeline(full, model, window, micro)
        ray.shutdown()
    assert rows == len(texts), (rows, len(texts))
    return rows / total, (rows - micro) / max(total - startup, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--window", type=int, default=256, help="rows per actor call")
    parser.add_argument("--micro", type=int, default=32, help="inputs per forward pass")
    args = parser.parse_args()
    texts = demo_sentences(args.n)
    embedder = load_embedder(args.model)
    lengths = [embedder.token_length(EmbedInput(text=t)) for t in texts]
    del embedder
    bare = bare_loop(args.model, texts, args.window, args.micro)
    with_startup, steady = pipeline(args.model, texts, args.window, args.micro)
    print(f"model {args.model}, {len(texts)} sentences, window {args.window}, micro {args.micro}")
    print(f"bare loop                      {bare:8.1f} items/s")
    ratio = with_startup / bare
    print(f"pipeline, start-up included    {with_startup:8.1f} items/s  ratio {ratio:.2f}")
    print(f"pipeline, start-up excluded    {steady:8.1f} items/s  ratio {steady / bare:.2f}")
    unsorted = padding_fraction(lengths, args.window, args.micro, sort=False)
    sorted_ = padding_fraction(lengths, args.window, args.micro, sort=True)
    print(f"padding fraction: unsorted {unsorted:.1%}, sorted by length {sorted_:.1%}")


if __name__ == "__main__":
    main()
