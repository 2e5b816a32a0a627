"""Reranker throughput: pairwise P(Yes) over the top 10 against one listwise generation over
the same 10 candidates, same model, same queries.

    python benchmarks/rerank_throughput.py [--model smollm2-135m] [--queries 4] [--k 10]

Pairwise runs the judge's shared-prefix path (``JudgeScorer.score``); listwise builds one
prompt over the k candidates and generates ``Ans: (k)`` greedily (``ListwiseReranker``).
Both run per query back to back, alternating order, so load changes on a shared machine hit
both alike. Prints pairs/s of each, the ratio, and how many listwise answers were
unparseable (an untrained model often writes no ``(k)``: that count is reported, not hidden).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from judge_throughput import demo_pairs  # same WordNet queries and candidates
from uniembed.reranker.listwise import ListwiseReranker
from uniembed.reranker.scorer import JudgeScorer


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    scorer = JudgeScorer.load(args.model)
    ranker = ListwiseReranker(scorer, max_new_tokens=args.max_new_tokens)
    data = demo_pairs(args.queries, args.k)
    # Warm-up outside the timings (first-call allocations).
    scorer.score(*data[0])
    ranker.generate(*data[0])
    t_pair = t_list = 0.0
    unparsed = 0
    for i, (query, cands) in enumerate(data):
        order = ("pair", "list") if i % 2 == 0 else ("list", "pair")
        for which in order:
            start = time.perf_counter()
            if which == "pair":
                scorer.score(query, cands)
                t_pair += time.perf_counter() - start
            else:
                answer = ranker.choose(query, cands)
                t_list += time.perf_counter() - start
                unparsed += not answer.ok
    pairs = args.queries * args.k
    print(
        f"model {args.model}, {args.queries} queries x top-{args.k}, load {os.getloadavg()[0]:.2f}"
    )
    print(f"pairwise (shared prefix): {pairs / t_pair:8.1f} pairs/s")
    print(f"listwise (one generation): {pairs / t_list:8.1f} pairs/s")
    print(
        f"listwise / pairwise: {t_pair / t_list:.2f}x; unparseable listwise answers: "
        f"{unparsed}/{args.queries}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
