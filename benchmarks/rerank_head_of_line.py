"""Rerank head-of-line blocking: how long a 2-document rerank waits behind a long request.

    PYTHONPATH=platform python benchmarks/rerank_head_of_line.py [--docs 32] [--rounds 1]
        [--bound 1024] [--max-text-tokens 512] [--delay 0.5] [--model smollm2-135m]

The long request is a 30k-character query with ``--docs`` documents of 28.8k characters
(cut to ``reranker.max_text_tokens``, 512, as served); ``--delay`` seconds after its first
step starts, a short request (a one-line query, 2 one-line documents) arrives. Both go
through the served reranker's own code (:class:`uniembed.serving.reranker_host.RerankerHost`: the
queue, the model thread, the judge; no HTTP), in two modes, alternated round by round so
that load changes on a shared machine hit both alike:

- ``whole``: a step may hold the whole long request (one request, one step: how the
  reranker ran before its work was bounded in tokens);
- ``bounded``: steps of at most ``--bound`` tokens (``jobs/configs/serve.yaml``'s
  ``reranker.max_batch_tokens`` by default): query-prefix chunks, packed short documents,
  chunks of a long document (:mod:`uniembed.reranker.steps`).

Prints, per mode, the short request's latency and the long request's, their ratios, the
bounded mode's step seconds (median, longest), the bound and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from pathlib import Path

from uniembed.serving.config import RerankerSection, load_serve_config
from uniembed.serving.reranker_host import RerankerHost

ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
    "every jolly bank clerk near the old river bridge at noon"
).split()


def text(chars: int, seed: int) -> str:
    """Random words, ``chars`` characters."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def shipped_reranker() -> RerankerSection:
    """The reranker section of ``jobs/configs/serve.yaml``."""
    import yaml

    with open(ROOT / "jobs" / "configs" / "serve.yaml") as f:
        app = yaml.safe_load(f)["applications"][0]
    return load_serve_config(app["args"]).reranker


async def one_round(host: RerankerHost, docs: int, delay: float) -> tuple[float, float]:
    """(short request's seconds, long request's seconds) with the short one sent ``delay``
    seconds after the long one's first step started."""
    long_query = (text(30_000, 0), None)
    long_docs = [(text(28_800, i + 1), None) for i in range(docs)]
    short_query = ("what is a cat?", None)
    short_docs = [("a cat is a small domesticated feline", None), ("a dog barks", None)]

    async def timed(query, documents) -> float:
        start = time.perf_counter()
        await host.score(query, documents)
        return time.perf_counter() - start

    started = host.queue.steps_started
    long = asyncio.ensure_future(timed(long_query, long_docs))
    while host.queue.steps_started == started:  # until its first step runs
        await asyncio.sleep(0.01)
    await asyncio.sleep(delay)
    short = await timed(short_query, short_docs)
    return short, await long


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--docs", type=int, default=32, help="documents of the long request")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each mode")
    parser.add_argument(
        "--delay", type=float, default=0.5, help="s into the long request's first step"
    )
    shipped = shipped_reranker()
    parser.add_argument(
        "--bound", type=int, default=shipped.max_batch_tokens, help="bounded mode's tokens"
    )
    parser.add_argument("--max-text-tokens", type=int, default=shipped.max_text_tokens)
    args = parser.parse_args(argv)

    from uniembed.reranker.scorer import JudgeScorer

    scorer = JudgeScorer.load(args.model, device="cpu")
    whole_bound = (args.docs + 1) * (args.max_text_tokens + 1)  # the request fits whole
    hosts = {
        mode: RerankerHost(
            scorer,
            RerankerSection(
                model=args.model,
                score_batch_size=shipped.score_batch_size,
                max_text_tokens=args.max_text_tokens,
                max_batch_tokens=bound,
            ),
        )
        for mode, bound in (("whole", whole_bound), ("bounded", args.bound))
    }
    step_s: list[float] = []  # the bounded mode's step seconds: what a newcomer may wait
    hosts["bounded"].queue.on_step = lambda _tokens, _queued, seconds: step_s.append(seconds)
    asyncio.run(hosts["whole"].score(("warm", None), [("up", None)]))  # first-call costs
    times: dict[str, list[tuple[float, float]]] = {"whole": [], "bounded": []}
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for mode in ("whole", "bounded") if r % 2 == 0 else ("bounded", "whole"):
            short, long = asyncio.run(one_round(hosts[mode], args.docs, args.delay))
            times[mode].append((short, long))
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1} {mode:7}: short {short:7.2f} s, long {long:7.2f} s", flush=True)
    med = {m: (statistics.median(s for s, _ in t), statistics.median(x for _, x in t))
           for m, t in times.items()}  # fmt: skip
    print(
        f"\nmodel {args.model}; long: 30k-char query + {args.docs} x 28.8k-char documents "
        f"(cut to {args.max_text_tokens} tokens); short: 2 one-line documents sent "
        f"{args.delay:.1f} s into its first step; {args.rounds} round(s) each, interleaved; "
        f"load average {min(loads):.1f}-{max(loads):.1f}"
    )
    for mode, bound in (("whole", "one request, one step"), ("bounded", f"{args.bound} tokens")):
        short, long = med[mode]
        print(f"{mode:7} ({bound}): short request {short:7.2f} s, long request {long:7.2f} s")
    print(
        f"bounded steps: {len(step_s)}, median {statistics.median(step_s):.2f} s, "
        f"longest {max(step_s):.2f} s"
    )
    print(
        f"short request: whole / bounded = {med['whole'][0] / med['bounded'][0]:.1f}x faster; "
        f"long request: bounded / whole = {med['bounded'][1] / med['whole'][1]:.2f}x the time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
