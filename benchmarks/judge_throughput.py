"""Judge throughput: shared-prefix KV cache against one pair at a time, same model and pairs.

    python benchmarks/judge_throughput.py [--model smollm2-135m] [--queries 4] [--k 50]

Each query is a WordNet usage sentence behind its task instruction (the long part); its K
candidates are short dictionary definitions from ``data/demo/wordnet`` (the gold one and
K-1 others, fixed seed). Per query both methods run back to back, in alternating order,
so load changes on a shared machine hit both alike. Prints pairs/s of each, their ratio,
the mean prefix/suffix token counts, the largest score difference, and the load average.
``--model tiny-qwen2-vl`` gives a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from uniembed.data import schema as S
from uniembed.data.demo import POS_ID, WORDNET_CORPUS, WORDNET_QUERIES, demo_path
from uniembed.reranker.scorer import JudgeInput, JudgeScorer


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in Path(demo_path(name)).read_text().splitlines()]


def demo_pairs(n_queries: int, k: int, seed: int = 0) -> list[tuple[JudgeInput, list[JudgeInput]]]:
    """``n_queries`` WordNet queries (instruction + sentence), each with K definitions: its
    gold definition first, then K-1 others drawn with ``seed``."""
    queries, corpus = _rows(WORDNET_QUERIES), _rows(WORDNET_CORPUS)
    by_id = {row[S.ID]: row[S.TEXT] for row in corpus}
    if k < 1 or k > len(corpus) or n_queries < 1 or n_queries > len(queries):
        raise SystemExit(f"need 1 <= k <= {len(corpus)} and 1 <= queries <= {len(queries)}")
    rng = random.Random(seed)
    out = []
    for row in rng.sample(queries, n_queries):
        gold = by_id[row[POS_ID]]
        others = [t for t in rng.sample(list(by_id.values()), k + 1) if t != gold][: k - 1]
        text = f"{row[S.INSTRUCTION]} {row[S.TEXT]}"
        out.append((JudgeInput(text=text), [JudgeInput(text=t) for t in [gold, *others]]))
    return out


def _timed(fn, *args, **kwargs) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--k", type=int, default=50, help="candidates per query")
    parser.add_argument("--batch-size", type=int, default=16, help="suffixes per forward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    judge = JudgeScorer.load(args.model, device=args.device)
    print(f"model {args.model} on {args.device}: loaded in {time.perf_counter() - start:.1f} s")
    work = demo_pairs(args.queries, args.k)
    prefix, suffix = judge._split(*[(q, c[0]) for q, c in work][0])
    print(f"prompt of one pair ({len(prefix)} + {len(suffix)} chars):\n{prefix + suffix}")
    # Warm-up: first calls allocate and pick kernels.
    judge.score(work[0][0], work[0][1][:4], batch_size=args.batch_size)
    judge.score_pairs([(work[0][0], c) for c in work[0][1][:2]])

    shared_s = single_s = 0.0
    max_diff = 0.0
    prefix_tokens, suffix_tokens = [], []
    for i, (query, candidates) in enumerate(work):
        pairs = [(query, c) for c in candidates]
        runs = ["shared", "single"] if i % 2 == 0 else ["single", "shared"]
        for run in runs:
            if run == "shared":
                shared, t = _timed(judge.score, query, candidates, batch_size=args.batch_size)
                shared_s += t
            else:
                single, t = _timed(judge.score_pairs, pairs)
                single_s += t
        max_diff = max(max_diff, float(np.abs(shared - single).max()))
        p, _ = judge._split(query, candidates[0])
        prefix_tokens.append(len(judge._token_ids(p)))
        for c in candidates:
            suffix_tokens.append(
                len(judge._token_ids(p + judge._split(query, c)[1])) - prefix_tokens[-1]
            )
        print(f"query {i + 1}/{len(work)}: shared {shared_s:.1f} s, single {single_s:.1f} s so far")

    n = sum(len(c) for _, c in work)
    load = os.getloadavg()
    print(f"pairs: {n} ({len(work)} queries x {args.k} candidates), batch size {args.batch_size}")
    print(
        f"tokens: prefix {np.mean(prefix_tokens):.0f}, suffix {np.mean(suffix_tokens):.1f} (mean)"
    )
    print(f"shared prefix : {n / shared_s:8.2f} pairs/s")
    print(f"one at a time : {n / single_s:8.2f} pairs/s")
    print(f"ratio         : {single_s / shared_s:8.2f}x")
    print(f"max |score difference|: {max_diff:.2e}")
    print(f"torch threads {torch.get_num_threads()}, load average {load[0]:.1f} {load[1]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
