"""Evaluate-job throughput with and without dedupe on an MMEB-shaped set whose candidates
repeat across queries (as in MMEB's classification tasks, where every query ranks the same
class names).

    python benchmarks/eval_throughput.py                     # minilm, 200 queries x 20
    python benchmarks/eval_throughput.py --queries 100 --candidates 50 --model minilm

The set is built from the demo WordNet eval: each query keeps its gold definition, and its
distractors are drawn from the gold definitions of the other queries, so the candidate pool
holds one definition per query and each is offered to about ``candidates`` queries.
Candidates/s counts candidate references scored per second of embedding (the embed
pipeline end to end, Ray Data actor start-up included); both runs must give the same
metrics, since dedupe may change the cost but never the number.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from uniembed.data.demo import WORDNET_EVAL, demo_path
from uniembed.evaluation.config import EvalConfig
from uniembed.evaluation.runner import run_evaluation
from uniembed.evaluation.tasks import QRY_IMG_PATH, QRY_TEXT, TGT_IMG_PATH, TGT_TEXT
from uniembed.runtime import init_ray
from uniembed.sections import ModelSection, RaySection


def build_set(path: Path, n_queries: int, n_candidates: int, seed: int = 0) -> tuple[int, int]:
    """Write the repeated-candidate set; returns (candidate references, distinct candidates)."""
    rows = [json.loads(line) for line in Path(demo_path(WORDNET_EVAL)).read_text().splitlines()]
    if not 2 <= n_candidates <= n_queries <= len(rows):
        raise SystemExit(f"need 2 <= candidates <= queries <= {len(rows)}")
    rows = rows[:n_queries]
    golds = [r[TGT_TEXT][0] for r in rows]
    rng = random.Random(seed)
    out = []
    for i, r in enumerate(rows):
        others = rng.sample([g for j, g in enumerate(golds) if j != i], n_candidates - 1)
        cands = [golds[i], *others]
        out.append(
            {
                QRY_TEXT: r[QRY_TEXT],
                QRY_IMG_PATH: "",
                TGT_TEXT: cands,
                TGT_IMG_PATH: [""] * len(cands),
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return n_queries * n_candidates, len(set(golds))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=20)
    args = ap.parse_args(argv)

    init_ray(RaySection())  # started once, outside both timings
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        data = Path(tmp) / "wordnet_repeated.jsonl"
        n_refs, n_distinct = build_set(data, args.queries, args.candidates)
        print(
            f"set: {args.queries} queries x {args.candidates} candidates = {n_refs} candidate "
            f"references, {n_distinct} distinct candidates; model {args.model}"
        )
        rates, metrics = {}, {}
        for dedupe in (False, True):
            cfg = EvalConfig(
                data=[str(data)],
                output=str(Path(tmp) / f"out-{dedupe}"),
                model=ModelSection(name=args.model),
                dedupe=dedupe,
            )
            start = time.perf_counter()
            results, _ = run_evaluation(cfg)
            wall = time.perf_counter() - start
            embed_s = results.timings["embed"]
            rates[dedupe] = n_refs / embed_s
            metrics[dedupe] = results.tasks[data.stem].metrics
            print(
                f"dedupe={'on ' if dedupe else 'off'}: embedded {results.dedupe.n_unique} items "
                f"in {embed_s:.1f}s ({wall:.1f}s with scoring and report) = "
                f"{rates[dedupe]:.1f} candidates/s; precision@1 "
                f"{100 * metrics[dedupe]['precision@1']:.1f}%"
            )
    same = all(abs(metrics[True][k] - metrics[False][k]) <= 1e-6 for k in metrics[True])
    print(f"speed-up with dedupe: {rates[True] / rates[False]:.2f}x; same metrics: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
