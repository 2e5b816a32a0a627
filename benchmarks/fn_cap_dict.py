"""The false-negative cap on a domain the demo does not ship, on the judge-fallback path: a
dictd dictionary (``apt-get install -y dict-vera``: acronym -> expansion) mined with the
embedder's cosines as the scores, as a mine run does when its judge fails the sanity check.

    python benchmarks/fn_cap_dict.py [--dict /usr/share/dictd/vera.dict.dz] [--pool 2000]
        [--queries 64] [--k 20] [--easy-margin 0.3] [--shares 1,0.5,0.3,0.2,0.1] [--seed 0]

Pool: ``--pool`` definitions drawn with ``--seed``; queries: the headwords of the first
``--queries`` of them, each with its own definition as the positive. A headword with several
definitions makes the others true false negatives (its group). Retrieval is exact top-``k``
over all-MiniLM-L6-v2 cosines with the demo's easy filter; selection is the mine job's own
(``select_table``, ``score_source: embedder``), once per share.
"""

from __future__ import annotations

import argparse
import gzip
import random

import numpy as np
import pyarrow as pa

from fn_cap import replay  # noqa: E402 - run from benchmarks/
from uniembed.data import schema as S
from uniembed.data.schema import CAND_SCORES


def read_dictd(path: str) -> list[tuple[str, str]]:
    """(headword, definition) pairs of a dictd ``.dict.dz``: a headword line at column 0, its
    definition on the indented lines below; one pair per indented block."""
    pairs: list[tuple[str, str]] = []
    head, body = None, []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("00-database") or line.startswith("00database"):
                head, body = None, []
                continue
            if line.strip() and not line[0].isspace():
                if head and body:
                    pairs.append((head, " ".join(body)))
                head, body = line.strip(), []
            elif line.strip() and head:
                body.append(line.strip())
    if head and body:
        pairs.append((head, " ".join(body)))
    return [(h, d) for h, d in pairs if len(d) > 3]


def judged_rows(pairs: list[tuple[str, str]], args: argparse.Namespace) -> pa.Table:
    """Retrieve and filter like the mine job; rows carry what the select stage reads."""
    from sentence_transformers import SentenceTransformer

    from uniembed.models.packaged import minilm_folder

    m = SentenceTransformer(str(minilm_folder()), device="cpu")
    enc = lambda xs: m.encode(xs, batch_size=64, normalize_embeddings=True)  # noqa: E731
    pool = enc([d for _, d in pairs])
    heads = [h for h, _ in pairs]
    q = enc(heads[: args.queries])
    sims = q @ pool.T
    rows = []
    for i in range(args.queries):
        order = [j for j in np.argsort(-sims[i], kind="stable")[: args.k] if j != i]
        pos = float(sims[i, i])
        cands = [j for j in order if sims[i, j] >= pos - args.easy_margin]
        rows.append(
            {
                S.ID: f"q{i}",
                S.TEXT: heads[i],
                S.IMAGE_URI: None,
                S.INSTRUCTION: None,
                S.SOURCE: f"{args.dict}:{i}",
                S.POS_ID: f"d{i}",
                S.POS_TEXT: pairs[i][1],
                S.POS_IMAGE: None,
                S.POS_SCORE: None,
                S.ORDINAL: i,
                S.CAND_IDS: [f"d{j}" for j in cands],
                S.CAND_TEXTS: [pairs[j][1] for j in cands],
                S.CAND_IMAGES: [None] * len(cands),
                S.CAND_SIMS: [float(sims[i, j]) for j in cands],
                S.CAND_RANKS: list(range(len(cands))),
                CAND_SCORES: None,
                S.CAND_TRUE_FN: [heads[j] == heads[i] for j in cands],
                S.POS_SIM: pos,
            }
        )
    return pa.Table.from_pylist(rows)


def main() -> None:
    """Print one Markdown table row per share."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dict", default="/usr/share/dictd/vera.dict.dz")
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--easy-margin", type=float, default=0.3)
    ap.add_argument("--shares", default="1,0.5,0.3,0.2,0.1")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    pairs = read_dictd(a.dict)
    # keep every sense of the drawn headwords together, so groups are whole
    rng = random.Random(a.seed)
    heads = sorted({h for h, _ in pairs})
    rng.shuffle(heads)
    chosen: list[tuple[str, str]] = []
    by_head: dict[str, list[str]] = {}
    for h, d in pairs:
        by_head.setdefault(h, []).append(d)
    for h in heads:
        if len(chosen) >= a.pool:
            break
        chosen += [(h, d) for d in by_head[h]]
    table = judged_rows(chosen, a)
    n_cand = sum(len(c) for c in table[S.CAND_IDS].to_pylist())
    multi = sum(1 for h in heads if len(by_head[h]) > 1)
    print(
        f"{a.dict}: {len(pairs)} definitions of {len(heads)} headwords ({multi} with several); "
        f"pool {len(chosen)}, {a.queries} queries, {n_cand} candidates after the easy filter\n"
    )
    print("| max_fn_share | rows kept | quarantined | capped | FN filtered | true FN caught / in |")
    print("|---|---|---|---|---|---|")
    for share in (float(x) for x in a.shares.split(",")):
        s = replay(table, S.SCORE_EMBEDDER, share, 0.01, 10)
        print(
            f"| {share:g} | {s['rows_written']} | {s['rows_without_negatives']} "
            f"| {s['rows_fn_capped']} | {s['false_negatives_filtered']} "
            f"| {s['true_fn_caught']} / {s['true_fn_judged']} |"
        )


if __name__ == "__main__":
    main()
