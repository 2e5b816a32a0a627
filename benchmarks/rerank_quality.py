"""Reranker quality on CPU: SmolLM2-135M trained on mined WordNet rows, judged on held-out ones.

    python benchmarks/rerank_quality.py [--train 48] [--test 30] [--steps 24] [--k 10]

1. Mine (``uniembed.mining.selection.select_by_similarity`` over all-MiniLM-L6-v2 top-k
   from ``data/demo/wordnet``): each query's gold definition and its hardest non-gold
   definitions, in ``MINED_SCHEMA`` columns. Queries are split into train and held-out.
2. Train the reranker in-process (the job's data, LoRA and step code, without Ray so the
   run fits a few minutes on 2 cores): pairwise Yes / No and listwise chats.
3. Report, on held-out queries: precision@1 of the embedder alone vs the embedder's top-k
   re-scored by the reranker (pairwise P(Yes)), and the AUC of P(Yes) for gold vs mined
   negatives, for the base model and the trained reranker.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from uniembed.data import schema as S
from uniembed.data.demo import POS_ID, WORDNET_CORPUS, WORDNET_QUERIES, demo_path
from uniembed.losses.rerank import RerankLMLoss
from uniembed.mining.selection import select_by_similarity
from uniembed.models import EmbedInput, load_embedder
from uniembed.reranker.data import plan_rows
from uniembed.reranker.model import prepare_reranker, rerank_step
from uniembed.reranker.scorer import JudgeInput, JudgeScorer
from uniembed.reranker.tokens import ChatEncoder
from uniembed.training.train_config import LoraSection


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in Path(demo_path(name)).read_text().splitlines()]


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties count half."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def mine(queries: list[dict], corpus: list[dict], k: int, n_neg: int) -> tuple[list[dict], list]:
    """Mined rows (MINED_SCHEMA names) and each query's top-k (ids, cosines) by MiniLM."""
    emb = load_embedder("minilm")
    q_vec = emb.embed([EmbedInput(text=f"{q[S.INSTRUCTION]} {q[S.TEXT]}") for q in queries])
    c_vec = emb.embed([EmbedInput(text=c[S.TEXT]) for c in corpus])
    sims = q_vec @ c_vec.T
    ids = [c[S.ID] for c in corpus]
    text = {c[S.ID]: c[S.TEXT] for c in corpus}
    rows, tops = [], []
    for i, q in enumerate(queries):
        top = np.argsort(-sims[i])[:k]
        tops.append(([ids[j] for j in top], sims[i][top]))
        gold = q[POS_ID]
        sel = select_by_similarity(
            [ids[j] for j in top],
            [float(sims[i][j]) for j in top],
            float(sims[i][ids.index(gold)]),
            n_neg,
            positive_id=gold,
        )
        rows.append(
            {
                S.QUERY_ID: q[S.ID],
                S.SOURCE: f"wordnet:{i}",
                S.QUERY_TEXT: q[S.TEXT],
                S.QUERY_IMAGE: None,
                S.QUERY_INSTRUCTION: q[S.INSTRUCTION],
                S.POS_TEXT: text[gold],
                S.POS_IMAGE: None,
                S.POS_SCORE: 1.0,
                S.NEG_TEXTS: [text[n] for n in sel.negative_ids],
                S.NEG_IMAGES: [None] * len(sel.negative_ids),
                S.NEG_SCORES: list(sel.scores),
                POS_ID: gold,
            }
        )
    return rows, tops


def evaluate(scorer: JudgeScorer, rows: list[dict], tops: list, text: dict) -> dict[str, float]:
    """precision@1 after reranking the top-k, and AUC of gold vs mined negatives."""
    hits, pos, neg = [], [], []
    for row, (ids, _) in zip(rows, tops):
        query = JudgeInput(f"{row[S.QUERY_INSTRUCTION]} {row[S.QUERY_TEXT]}")
        s = scorer.score(query, [JudgeInput(text[i]) for i in ids])
        hits.append(ids[int(np.argmax(s))] == row[POS_ID])
        if row[POS_ID] in ids:
            pos.append(s[ids.index(row[POS_ID])])
        else:
            pos.append(scorer.score(query, [JudgeInput(row[S.POS_TEXT])])[0])
        neg.extend(s[[ids.index(i) for i in ids if text[i] in row[S.NEG_TEXTS]]])
    return {"p@1": float(np.mean(hits)), "auc": auc(np.array(pos), np.array(neg))}


def main(argv: list[str] | None = None) -> int:
    """Run the quality check; prints the table; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--train", type=int, default=48)
    p.add_argument("--test", type=int, default=30)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--batch", type=int, default=4, help="rows per step")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    queries, corpus = _rows(WORDNET_QUERIES), _rows(WORDNET_CORPUS)
    picked = [queries[i] for i in rng.permutation(len(queries))[: args.train + args.test]]
    t0 = time.perf_counter()
    rows, tops = mine(picked, corpus, args.k, n_neg=6)
    text = {c[S.ID]: c[S.TEXT] for c in corpus}
    train, test = rows[: args.train], rows[args.train :]
    test_tops = tops[args.train :]
    embed_p1 = float(np.mean([ids[0] == r[POS_ID] for r, (ids, _) in zip(test, test_tops)]))
    print(f"mined {len(rows)} rows in {time.perf_counter() - t0:.0f}s")

    scorer = JudgeScorer.load(args.model)
    t0 = time.perf_counter()
    base = evaluate(scorer, test, test_tops, text)
    print(
        f"base evaluated in {time.perf_counter() - t0:.0f}s: embedder p@1 {embed_p1:.3f}, "
        f"+ base judge p@1 {base['p@1']:.3f}, base AUC {base['auc']:.3f}",
        flush=True,
    )
    scorer.model = prepare_reranker(scorer.model, LoraSection(r=16, alpha=64, dropout=0.0)).train()
    encoder = ChatEncoder(scorer)
    params = [q for q in scorer.model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
    t0 = time.perf_counter()
    for step in range(args.steps):
        idx = rng.choice(len(train), args.batch, replace=False)
        chats, _ = plan_rows([train[i] for i in idx], 5, args.seed)
        loss, stats = rerank_step(scorer.model, encoder, chats, RerankLMLoss(), 6)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        acc = stats["answer_token_acc"]
        print(f"step {step + 1}: loss {float(loss):.3f} acc {acc:.2f}", flush=True)
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f}s")
    scorer.model.eval()
    trained = evaluate(scorer, test, test_tops, text)
    print(f"\nheld-out queries: {len(test)}; top-{args.k} from all-MiniLM-L6-v2")
    print("| system | precision@1 | AUC gold vs mined negatives |")
    print("|---|---|---|")
    print(f"| embedder alone (minilm) | {embed_p1:.3f} | - |")
    print(f"| + base {args.model} (zero-shot judge) | {base['p@1']:.3f} | {base['auc']:.3f} |")
    print(f"| + trained reranker | {trained['p@1']:.3f} | {trained['auc']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
