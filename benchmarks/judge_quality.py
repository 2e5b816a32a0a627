"""Judge quality on held-out WordNet queries: AUC and the reranking of the embedder's top 10.

    python benchmarks/judge_quality.py                        # zero-shot vs the trained judge
    python benchmarks/judge_quality.py --judges smollm2-135m outputs/train/judge-demo/export

The queries are the demo's held-out split (``data/demo/wordnet/judge/heldout_queries.jsonl``,
written by ``scripts/split_judge_data.py``): no training row of the shipped judge comes from
them. all-MiniLM-L6-v2 retrieves the top ``--k`` definitions of the whole corpus for each.

- AUC: per query, the share of its top-``--k`` candidates (the gold and definitions identical
  to it left out) that the judge scores below the gold; the mean over queries. This is the
  mine job's sanity figure (``report.json`` ``auc``).
- precision@1: the embedder's first hit, and the first hit after the judge re-scores the top
  ``--rerank`` (pairwise P(Yes)); a definition identical to the gold counts as the gold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from uniembed.data import schema as S
from uniembed.data.demo import DEFINITION_GROUP, POS_ID, WORDNET_CORPUS, demo_path
from uniembed.mining.report import positive_auc
from uniembed.models import EmbedInput, load_embedder
from uniembed.reranker.scorer import JudgeInput, JudgeScorer

HELDOUT = "wordnet/judge/heldout_queries.jsonl"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in Path(demo_path(name)).read_text().splitlines() if line]


def retrieve(queries: list[dict], corpus: list[dict], k: int) -> list[list[int]]:
    """Each query's top ``k`` corpus positions by all-MiniLM-L6-v2 cosine."""
    emb = load_embedder("minilm")
    q = emb.embed([EmbedInput(text=r[S.TEXT], instruction=r.get(S.INSTRUCTION)) for r in queries])
    c = emb.embed([EmbedInput(text=r[S.TEXT]) for r in corpus])
    sims = q @ c.T
    return [list(np.argsort(-row)[:k]) for row in sims]


def evaluate(
    judge: JudgeScorer, queries: list[dict], corpus: list[dict], tops: list[list[int]], rerank: int
) -> dict[str, float]:
    """Mean per-query AUC, precision@1 after reranking, pairs/s."""
    index = {c[S.ID]: i for i, c in enumerate(corpus)}
    aucs, hits, pairs, busy = [], [], 0, 0.0
    for q, top in zip(queries, tops):
        gold = index[q[POS_ID]]
        group = corpus[gold][DEFINITION_GROUP]
        same = {i for i in top if corpus[i][DEFINITION_GROUP] == group}
        others = [i for i in top if i not in same]
        items = [gold, *others]
        query = JudgeInput(text="\n".join(p for p in (q.get(S.INSTRUCTION), q[S.TEXT]) if p))
        start = time.perf_counter()
        scores = judge.score(query, [JudgeInput(text=corpus[i][S.TEXT]) for i in items])
        busy += time.perf_counter() - start
        pairs += len(items)
        by_item = dict(zip(items, scores, strict=True))
        auc = positive_auc(float(scores[0]), scores[1:])
        if auc is not None:
            aucs.append(auc)
        # a definition identical to the gold reads the same: it gets the gold's score
        best = max(top[:rerank], key=lambda i: by_item[gold] if i in same else by_item[i])
        hits.append(best in same)
    return {"auc": float(np.mean(aucs)), "p@1": float(np.mean(hits)), "pairs/s": pairs / busy}


def main(argv: list[str] | None = None) -> int:
    """Print the table; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--judges", nargs="+", default=["smollm2-135m", "smollm2-135m-judge"])
    p.add_argument("--queries", type=int, default=200, help="first N held-out queries")
    p.add_argument("--k", type=int, default=20, help="candidates per query (mine default 20)")
    p.add_argument("--rerank", type=int, default=10, help="top N the judge re-ranks")
    args = p.parse_args(argv)
    queries = _rows(HELDOUT)[: args.queries]
    corpus = _rows(WORDNET_CORPUS)
    tops = retrieve(queries, corpus, args.k)
    index = {c[S.ID]: i for i, c in enumerate(corpus)}
    groups = [corpus[index[q[POS_ID]]][DEFINITION_GROUP] for q in queries]
    embed_p1 = float(
        np.mean([corpus[t[0]][DEFINITION_GROUP] == g for t, g in zip(tops, groups, strict=True)])
    )
    print(
        f"$ python benchmarks/judge_quality.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    )
    print(
        f"\n{len(queries)} held-out queries; all-MiniLM-L6-v2 top {args.k}, judge re-ranks top "
        f"{args.rerank}\n"
    )
    print("| system | AUC gold vs top-k | precision@1 | pairs/s |")
    print("|---|---|---|---|")
    print(f"| minilm alone | - | {embed_p1:.3f} | - |")
    for name in args.judges:
        m = evaluate(JudgeScorer.load(name), queries, corpus, tops, args.rerank)
        print(
            f"| minilm + judge `{name}` | {m['auc']:.3f} | {m['p@1']:.3f} | {m['pairs/s']:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
