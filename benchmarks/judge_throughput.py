"""Judge throughput: the packed shared-prefix path against the padded cache-copy path and
a bare forward of the same tokens, same model and pairs, measured in one run.

    python benchmarks/judge_throughput.py [--model smollm2-135m] [--queries 4] [--k 21]
        [--batch-size 16] [--threads 1,2] [--single]

Each query is a WordNet usage sentence behind its task instruction (the long part); its K
candidates are short dictionary definitions from ``data/demo/wordnet`` (the gold one and
K-1 others, fixed seed); K=21 and batch size 16 are the mine job's defaults (20 candidates
and the positive, ``judge.compute.micro_batch_size``). Methods, per query back to back in
rotating order so load changes on a shared machine hit all alike:

* ``packed``: ``JudgeScorer.score`` as shipped (candidates packed behind the prefix);
* ``expanded``: the same with ``packs_candidates = False``: padded candidate batches on
  copies of the prefix KV cache (the path before packing);
* ``bare forward``: only the model forward of the packed tokens (inputs captured from a
  ``score`` call with all K candidates in one forward), the ceiling: the gap to it is
  everything that is not model compute (prompts, tokenisation, masks, Python);
* ``one at a time`` (``--single``): each full prompt alone, no sharing.

Prints pairs/s per method and thread count, ratios to ``expanded`` and to the ceiling,
the mean prefix/suffix token counts, the largest score difference and the load average.
``--model tiny-qwen2-vl`` gives a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def captured_forward(judge: JudgeScorer, query: JudgeInput, cands: list[JudgeInput]) -> dict:
    """The keyword arguments of the model forward that scores all ``cands`` in one pass."""
    seen: list[dict[str, Any]] = []

    def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen.append(dict(kwargs))

    handle = judge.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        judge.score(query, cands, batch_size=len(cands))
    finally:
        handle.remove()
    if len(seen) != 1:
        raise SystemExit(f"expected one forward for a packed query, saw {len(seen)}")
    return seen[0]


def _bare(judge: JudgeScorer, kwargs: dict) -> None:
    with torch.inference_mode():
        judge.model(**kwargs)


def _methods(judge: JudgeScorer, batch_size: int, single: bool) -> dict[str, Callable]:
    def packed(q: JudgeInput, cands: list[JudgeInput], _kw: dict) -> np.ndarray:
        judge.packs_candidates = True
        return judge.score(q, cands, batch_size=batch_size)

    def expanded(q: JudgeInput, cands: list[JudgeInput], _kw: dict) -> np.ndarray:
        judge.packs_candidates = False
        try:
            return judge.score(q, cands, batch_size=batch_size)
        finally:
            judge.packs_candidates = True

    methods = {
        "expanded": expanded,
        "packed": packed,
        "bare forward": lambda q, cands, kw: _bare(judge, kw),
    }
    if single:
        methods["one at a time"] = lambda q, cands, kw: judge.score_pairs([(q, c) for c in cands])
    return methods


def _token_counts(judge: JudgeScorer, work: list) -> tuple[float, float]:
    prefix_tokens, suffix_tokens = [], []
    for query, candidates in work:
        p, _ = judge._split(query, candidates[0])
        prefix_tokens.append(len(judge._token_ids(p)))
        for c in candidates:
            full = judge._token_ids(p + judge._split(query, c)[1])
            suffix_tokens.append(len(full) - prefix_tokens[-1])
    return float(np.mean(prefix_tokens)), float(np.mean(suffix_tokens))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--k", type=int, default=21, help="candidates per query")
    parser.add_argument("--batch-size", type=int, default=16, help="candidates per forward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", default=None, help="torch CPU thread counts to compare, e.g. 1,2"
    )
    parser.add_argument("--single", action="store_true", help="also time one pair at a time")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [None]

    start = time.perf_counter()
    judge = JudgeScorer.load(args.model, device=args.device)
    print(f"model {args.model} on {args.device}: loaded in {time.perf_counter() - start:.1f} s")
    work = demo_pairs(args.queries, args.k)
    prefix, suffix = judge._split(work[0][0], work[0][1][0])
    print(f"prompt of one pair ({len(prefix)} + {len(suffix)} chars):\n{prefix + suffix}")
    captured = [captured_forward(judge, q, c) for q, c in work]
    methods = _methods(judge, args.batch_size, args.single)
    # Warm-up: first calls allocate and pick kernels.
    for fn in methods.values():
        fn(work[0][0], work[0][1], captured[0])

    seconds = {(t, m): 0.0 for t in thread_counts for m in methods}
    scores: dict[str, list[np.ndarray]] = {m: [] for m in methods if m != "bare forward"}
    runs = [(t, m) for t in thread_counts for m in methods]
    for i, (query, candidates) in enumerate(work):
        shift = i % len(runs)
        for t, m in runs[shift:] + runs[:shift]:
            if t is not None:
                torch.set_num_threads(t)
            begin = time.perf_counter()
            result = methods[m](query, candidates, captured[i])
            seconds[t, m] += time.perf_counter() - begin
            if m in scores and (t == thread_counts[0]):
                scores[m].append(result)
        print(f"query {i + 1}/{len(work)} done", flush=True)

    n = sum(len(c) for _, c in work)
    load = os.getloadavg()
    prefix_tokens, suffix_tokens = _token_counts(judge, work)
    print(f"pairs: {n} ({len(work)} queries x {args.k} candidates), batch size {args.batch_size}")
    print(f"tokens: prefix {prefix_tokens:.0f}, suffix {suffix_tokens:.1f} (mean)")
    print(f"{'threads':>7}  {'method':<14} {'pairs/s':>8} {'x expanded':>10} {'of ceiling':>10}")
    for t in thread_counts:
        label = str(t if t is not None else torch.get_num_threads())
        for m in methods:
            s = seconds[t, m]
            ratio = seconds[t, "expanded"] / s
            ceiling = seconds[t, "bare forward"] / s
            print(f"{label:>7}  {m:<14} {n / s:8.2f} {ratio:9.2f}x {100 * ceiling:9.0f}%")
    reference = np.concatenate(scores["expanded"])
    for m, got in scores.items():
        if m != "expanded":
            diff = np.abs(np.concatenate(got) - reference).max()
            print(f"max |{m} - expanded| score: {diff:.2e}")
    print(f"load average {load[0]:.1f} {load[1]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
