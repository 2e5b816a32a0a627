"""The served rerank score: the judge fused with the embedder's cosine, its weight fitted on
held-out WordNet queries, precision@1 measured on other held-out WordNet queries and on a
domain the judge never saw (FOLDOC: computing term -> definition).

    PYTHONPATH=platform python benchmarks/rerank_fusion.py [--fit 100] [--test 100]
        [--foldoc 100] [--pool 2000] [--k 10] [--judge smollm2-135m-judge]
        [--write models/smollm2-135m-judge/fusion.json]

- **Fit**: the first ``--fit`` queries of the demo's held-out split
  (``data/demo/wordnet/judge/heldout_queries.jsonl``: no training row of the shipped judge
  comes from them; the default mine job's 64 queries are among them). all-MiniLM-L6-v2
  retrieves the top ``--k`` of the 3,000 definitions; the judge scores them;
  :func:`uniembed.reranker.fusion.fit_fusion` picks the weight (precision@1, ties to the
  embedder). A definition identical to the gold (same ``definition_group``) counts as gold.
- **Test (a)**: the next ``--test`` held-out queries, same retrieval, the fitted fusion.
- **Test (b)**: FOLDOC (``apt-get install dict-foldoc``, read by
  ``scale_corpus.dictd_entries``): ``--pool`` entries drawn with a fixed seed, the first
  sense of each as the pool, the first ``--foldoc`` headwords as queries (with the demo's
  instruction for dictionary queries); a pool text of the same headword counts as gold.

The query sent to the judge is the instruction and the text on two lines (as
``judge_quality.py``); the embedder embeds the text with the instruction. Prints one
Markdown table (precision@1 of the embedder alone, the judge alone and the fused score) and
the fitted weight; ``--write`` stores the fusion (with the test figures) for the serve app.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from judge_quality import HELDOUT, _rows  # noqa: E402 - run from benchmarks/
from scale_corpus import INSTRUCTION, dictd_entries  # noqa: E402
from uniembed.data import schema as S
from uniembed.data.demo import DEFINITION_GROUP, POS_ID, WORDNET_CORPUS
from uniembed.models import EmbedInput, load_embedder
from uniembed.models.embedder import Embedder
from uniembed.reranker.fusion import Fusion, fit_fusion, precision_at_1
from uniembed.reranker.scorer import JudgeInput, JudgeScorer

EMBEDDER = "minilm"


@dataclasses.dataclass
class Split:
    """Per query: the judge's query text, its candidates' texts in the embedder's order, their
    cosines (k,) and whether each is relevant (k,)."""

    name: str
    queries: list[str]
    candidates: list[list[str]]
    cosines: list[np.ndarray]
    relevant: list[np.ndarray]


def top_k(
    emb: Embedder, queries: list[EmbedInput], pool: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top ``k`` positions (q, k) in the pool's vectors (n, d) and their cosines
    (q, k)."""
    sims = emb.embed(queries) @ pool.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def wordnet_split(
    emb: Embedder,
    rows: list[dict],
    corpus: list[dict],
    vectors: np.ndarray,
    k: int,
    name: str,
) -> Split:
    """Held-out WordNet queries over the demo corpus (its vectors (n, d))."""
    order, cos = top_k(
        emb, [EmbedInput(text=r[S.TEXT], instruction=r.get(S.INSTRUCTION)) for r in rows],
        vectors, k,
    )  # fmt: skip
    at = {c[S.ID]: i for i, c in enumerate(corpus)}
    groups = [c[DEFINITION_GROUP] for c in corpus]
    return Split(
        name,
        ["\n".join(p for p in (r.get(S.INSTRUCTION), r[S.TEXT]) if p) for r in rows],
        [[corpus[j][S.TEXT] for j in o] for o in order],
        list(cos),
        [np.array([groups[j] == groups[at[r[POS_ID]]] for j in o]) for r, o in zip(rows, order)],
    )


def foldoc_split(emb: Embedder, n: int, pool_size: int, k: int, seed: int) -> Split:
    """FOLDOC headwords -> first senses: ``pool_size`` entries drawn with ``seed``, the
    first ``n`` of them the queries."""
    entries = [(h, senses[0]) for h, senses in dictd_entries("foldoc")]
    random.Random(seed).shuffle(entries)
    entries = entries[:pool_size]
    heads = [h.lower() for h, _ in entries]
    pool = [d for _, d in entries]
    vectors = emb.embed([EmbedInput(text=t) for t in pool])
    queries = [EmbedInput(text=h, instruction=INSTRUCTION) for h, _ in entries[:n]]
    order, cos = top_k(emb, queries, vectors, k)
    return Split(
        f"FOLDOC, {n} terms, pool {len(pool)}",
        [f"{INSTRUCTION}\n{h}" for h, _ in entries[:n]],
        [[pool[j] for j in o] for o in order],
        list(cos),
        [np.array([heads[j] == heads[q] for j in o]) for q, o in enumerate(order)],
    )


def judge(scorer: JudgeScorer, split: Split) -> tuple[list[np.ndarray], float]:
    """P(Yes) (k,) per query and the pairs per busy second."""
    out, busy, pairs = [], 0.0, 0
    for q, cands in zip(split.queries, split.candidates):
        start = time.perf_counter()
        out.append(scorer.score(JudgeInput(text=q), [JudgeInput(text=c) for c in cands]))
        busy += time.perf_counter() - start
        pairs += len(cands)
    print(f"  judged {split.name}: {pairs} pairs, {pairs / busy:.1f} pairs/s", file=sys.stderr)
    return out, pairs / busy


def measure(fusion: Fusion, split: Split, p_yes: list[np.ndarray]) -> dict[str, float]:
    """precision@1 of the embedder, the judge and the fused score on ``split``."""
    fused = [fusion.fuse(c, p) for c, p in zip(split.cosines, p_yes)]
    return {
        "queries": len(split.queries),
        "queries_with_gold_in_top_k": int(sum(r.any() for r in split.relevant)),
        "p@1_embedder": precision_at_1(split.cosines, split.relevant),
        "p@1_reranker": precision_at_1(p_yes, split.relevant),
        "p@1_fused": precision_at_1(fused, split.relevant),
    }


def main(argv: list[str] | None = None) -> int:
    """Fit, measure, print the table; write the fusion with ``--write``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--judge", default="smollm2-135m-judge")
    p.add_argument("--fit", type=int, default=100, help="held-out WordNet queries to fit on")
    p.add_argument("--test", type=int, default=100, help="the next held-out queries to test")
    p.add_argument("--foldoc", type=int, default=100, help="FOLDOC queries (0: none)")
    p.add_argument("--pool", type=int, default=2000, help="FOLDOC pool size")
    p.add_argument("--k", type=int, default=10, help="embedder's top k the judge re-ranks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", type=Path, help="store the fusion here (fusion.json)")
    args = p.parse_args(argv)
    heldout, corpus = _rows(HELDOUT), _rows(WORDNET_CORPUS)
    if args.fit + args.test > len(heldout):
        p.error(f"--fit + --test must be <= {len(heldout)} (the held-out queries)")
    emb = load_embedder(EMBEDDER)
    vectors = emb.embed([EmbedInput(text=c[S.TEXT]) for c in corpus])
    fit_split = wordnet_split(
        emb, heldout[: args.fit], corpus, vectors, args.k,
        f"WordNet held-out queries 0-{args.fit - 1} (fit)",
    )  # fmt: skip
    splits = [fit_split]
    if args.test:
        splits.append(wordnet_split(
            emb, heldout[args.fit : args.fit + args.test], corpus, vectors, args.k,
            f"WordNet held-out queries {args.fit}-{args.fit + args.test - 1}",
        ))  # fmt: skip
    if args.foldoc:
        splits.append(foldoc_split(emb, args.foldoc, args.pool, args.k, args.seed))
    scorer = JudgeScorer.load(args.judge)
    scores = [judge(scorer, s) for s in splits]
    fitted = fit_fusion(
        fit_split.cosines, scores[0][0], fit_split.relevant, embedder=EMBEDDER,
        reranker=args.judge, split=f"{HELDOUT}: queries 0-{args.fit - 1}, minilm top {args.k}",
    )  # fmt: skip
    fusion = fitted.fusion
    rows = [(s, measure(fusion, s, p)) for s, (p, _) in zip(splits, scores)]
    argv_shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"$ python benchmarks/rerank_fusion.py {argv_shown}\n")
    print(f"all-MiniLM-L6-v2 top {args.k}, re-ranked by `{args.judge}`; fitted weight "
          f"w = {fusion.weight:.2f} (reranker's share; 0 = embedder's order)\n")  # fmt: skip
    print("| queries | gold in top k | p@1 embedder | p@1 reranker | p@1 fused | pairs/s |")
    print("|---|---|---|---|---|---|")
    for (s, m), (_, rate) in zip(rows, scores):
        print(
            f"| {s.name} | {m['queries_with_gold_in_top_k']}/{m['queries']} "
            f"| {m['p@1_embedder']:.2f} | {m['p@1_reranker']:.2f} | {m['p@1_fused']:.2f} "
            f"| {rate:.1f} |"
        )
    curve = ", ".join(f"{w:g}: {v:.2f}" for w, v in fitted.curve.items())
    print(f"\nfit split p@1 per weight: {curve}")
    if args.write:
        tests = {s.name: m for s, m in rows[1:]}
        stored = dataclasses.replace(fusion, metrics={**fusion.metrics, "tests": tests})
        args.write.write_text(stored.to_json(), encoding="utf-8")
        print(f"wrote {args.write}")
        json.loads(args.write.read_text())  # written whole
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
