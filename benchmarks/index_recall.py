"""Recall and speed of the mine job's automatic IVF index against the exact flat index.

    python benchmarks/index_recall.py --synthetic 100000,1000000
    python benchmarks/index_recall.py --embeddings OUT   # an embed job's output (real vectors)
    python benchmarks/index_recall.py --npy vectors.npy  # (n, d) float32 unit rows
    python benchmarks/index_recall.py --synthetic 1000000 --nprobe 16,32,48,64 --queries 2000

For each pool it builds the index ``retrieval.index: auto`` would build above
``APPROXIMATE_ABOVE`` (IVF-Flat, :func:`uniembed.index.choice.auto_nlist` lists, 64 training
points per list) and prints, per ``nprobe``: recall@K of held-out queries against the exact
flat search (K=20, the mine default of the scale runs), the IVF build seconds and both
searches' queries/s, measured in one run. The shipped nprobe (``AUTO_PROBE_SHARE`` of the
lists) is marked ``*``.

``--synthetic N`` draws 384-d unit vectors around N/50 anisotropic cluster centres (text
embeddings are clustered and use a few directions more than the rest); queries are more
draws of the same kind, not pool rows. ``--embeddings`` and ``--npy`` hold out
``--queries`` rows of the pool as queries.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uniembed.index import build_index  # noqa: E402
from uniembed.index.choice import (  # noqa: E402
    AUTO_TRAIN_PER_LIST,
    auto_nlist,
    auto_nprobe,
    recall_at_k,
)

DIM = 384


def synthetic(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    """``n`` unit vectors, each near one of ``centres`` (see the module doc)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, centres.shape[1]), dtype=np.float32)
    scale = np.linspace(1.0, 0.2, centres.shape[1], dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        which = rng.integers(0, len(centres), m)
        noise = rng.standard_normal((m, centres.shape[1]), dtype=np.float32) * scale
        x = centres[which] + 0.07 * noise
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def synthetic_pool(n: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    scale = np.linspace(1.0, 0.1, DIM, dtype=np.float32)
    centres = rng.standard_normal((max(1, n // 50), DIM), dtype=np.float32) * scale
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return synthetic(n, 2, centres), synthetic(queries, 3, centres)


def embedded_pool(folder: str, queries: int) -> tuple[np.ndarray, np.ndarray]:
    if folder.endswith(".npy"):
        matrix = np.load(folder)
    else:
        from uniembed.embed.pipeline import read_embeddings

        _, matrix = read_embeddings(folder)
    order = np.random.default_rng(0).permutation(len(matrix))
    held = np.sort(order[:queries])
    keep = np.sort(order[queries:])
    return np.ascontiguousarray(matrix[keep]), np.ascontiguousarray(matrix[held])


def measure(name: str, pool: np.ndarray, queries: np.ndarray, k: int, probes: list[int]) -> None:
    n = len(pool)
    start = time.perf_counter()
    exact_s, exact = faiss.knn(queries, pool, k, metric=faiss.METRIC_INNER_PRODUCT)
    flat_s = time.perf_counter() - start
    nlist = auto_nlist(n)
    start = time.perf_counter()
    index = build_index(pool, kind="ivf", nlist=nlist, train_per_list=AUTO_TRAIN_PER_LIST)
    build_s = time.perf_counter() - start
    print(
        f"{name}: {n} rows x {pool.shape[1]}, {len(queries)} queries, K={k}; flat search "
        f"{len(queries) / flat_s:,.0f} q/s; ivf nlist {nlist} built in {build_s:.1f} s",
        flush=True,
    )
    print(f"  {'nprobe':>7}{'recall@K':>10}{'ivf q/s':>10}{'x flat':>8}")
    shipped = auto_nprobe(nlist)
    for nprobe in probes or sorted({16, 32, shipped, 2 * shipped}):
        index.nprobe = min(nprobe, nlist)
        start = time.perf_counter()
        _, found = index.search(queries, k)
        ivf_s = time.perf_counter() - start
        mark = "*" if nprobe == auto_nprobe(nlist) else " "
        print(
            f" {mark}{nprobe:>7}{recall_at_k(found, exact):>10.4f}"
            f"{len(queries) / ivf_s:>10,.0f}{flat_s / ivf_s:>7.1f}x",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--synthetic", default="", help="pool sizes, comma-separated")
    p.add_argument("--embeddings", default="", help="an embed job's output folder")
    p.add_argument("--npy", default="", help="a .npy file of (n, d) float32 unit rows")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--nprobe", default="", help="default: 16, 32, the shipped share, 2x it")
    args = p.parse_args()
    probes = [int(x) for x in args.nprobe.split(",") if x]
    for source in (args.embeddings, args.npy):
        if source:
            pool, queries = embedded_pool(source, args.queries)
            measure(f"embeddings {source}", pool, queries, args.k, probes)
    for n in [int(x) for x in args.synthetic.split(",") if x]:
        pool, queries = synthetic_pool(n, args.queries)
        measure("synthetic", pool, queries, args.k, probes)
        del pool
    print(f"load {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
