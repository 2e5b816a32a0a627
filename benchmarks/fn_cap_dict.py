"""The false-negative cap on a domain the demo does not ship, on the judge-fallback path: a
dictd dictionary (``apt-get install -y dict-vera``: acronym -> expansion) mined with the
embedder's cosines as the scores, as a mine run does when its judge fails the sanity check.

    python benchmarks/fn_cap_dict.py [--dict /usr/share/dictd/vera.dict.dz] [--pool 2000]
        [--queries 64] [--k 20] [--easy-margin 0.3] [--shares 1,0.5,0.3,0.2,0.1] [--seed 0]
    python benchmarks/fn_cap_dict.py --items data/demo/wordnet/queries.jsonl \
        data/demo/wordnet/corpus.jsonl definition_group      # the demo, its true groups

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


def judged_rows(
    queries: list[str],
    positives: list[int],
    pool: list[str],
    groups: list[str],
    args: argparse.Namespace,
) -> pa.Table:
    """Retrieve and filter like the mine job: query ``i``'s positive is ``pool[positives[i]]``
    and a candidate in the positive's group is a true false negative. Rows carry what the
    select stage reads."""
    from sentence_transformers import SentenceTransformer

    from uniembed.models.packaged import minilm_folder

    m = SentenceTransformer(str(minilm_folder()), device="cpu")
    enc = lambda xs: m.encode(xs, batch_size=64, normalize_embeddings=True)  # noqa: E731
    sims = enc(queries) @ enc(pool).T
    rows = []
    for i, p in enumerate(positives):
        order = [j for j in np.argsort(-sims[i], kind="stable")[: args.k] if j != p]
        pos = float(sims[i, p])
        cands = [j for j in order if sims[i, j] >= pos - args.easy_margin]
        rows.append(
            {
                S.ID: f"q{i}",
                S.TEXT: queries[i],
                S.IMAGE_URI: None,
                S.INSTRUCTION: None,
                S.SOURCE: f"q:{i}",
                S.POS_ID: f"d{p}",
                S.POS_TEXT: pool[p],
                S.POS_IMAGE: None,
                S.POS_SCORE: None,
                S.ORDINAL: i,
                S.CAND_IDS: [f"d{j}" for j in cands],
                S.CAND_TEXTS: [pool[j] for j in cands],
                S.CAND_IMAGES: [None] * len(cands),
                S.CAND_SIMS: [float(sims[i, j]) for j in cands],
                S.CAND_RANKS: list(range(len(cands))),
                CAND_SCORES: None,
                S.CAND_TRUE_FN: [groups[j] == groups[p] for j in cands],
                S.POS_SIM: pos,
            }
        )
    return pa.Table.from_pylist(rows)


def items_table(args: argparse.Namespace) -> tuple[pa.Table, str]:
    """The mine job's item inputs (``--items QUERIES POOL GROUP_FIELD``, e.g. the demo's
    WordNet set with ``definition_group``): the first ``--queries`` queries, the whole pool."""
    import json

    qpath, ppath, field = args.items
    with open(qpath, encoding="utf-8") as f:
        qs = [json.loads(line) for line in f][: args.queries]
    with open(ppath, encoding="utf-8") as f:
        pool = [json.loads(line) for line in f]
    at = {r["id"]: j for j, r in enumerate(pool)}
    table = judged_rows(
        [q["text"] for q in qs],
        [at[q["pos_id"]] for q in qs],
        [r["text"] for r in pool],
        [str(r.get(field, r["id"])) for r in pool],
        args,
    )
    return table, f"{qpath}: {len(qs)} queries, pool {len(pool)} ({field} groups)"


def dict_table(args: argparse.Namespace) -> tuple[pa.Table, str]:
    """A dictd dictionary: ``--pool`` definitions (every sense of the drawn headwords), the
    first ``--queries`` of them as queries (headword -> its own definition)."""
    pairs = read_dictd(args.dict)
    rng = random.Random(args.seed)
    heads = sorted({h for h, _ in pairs})
    rng.shuffle(heads)
    by_head: dict[str, list[str]] = {}
    for h, d in pairs:
        by_head.setdefault(h, []).append(d)
    chosen: list[tuple[str, str]] = []
    for h in heads:  # every sense of a drawn headword, so groups are whole
        if len(chosen) >= args.pool:
            break
        chosen += [(h, d) for d in by_head[h]]
    n = args.queries
    table = judged_rows(
        [h for h, _ in chosen[:n]],
        list(range(n)),
        [d for _, d in chosen],
        [h for h, _ in chosen],
        args,
    )
    multi = sum(1 for h in heads if len(by_head[h]) > 1)
    return table, (
        f"{args.dict}: {len(pairs)} definitions of {len(heads)} headwords ({multi} with "
        f"several); pool {len(chosen)}, {n} queries"
    )


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
    ap.add_argument(
        "--items",
        nargs=3,
        metavar=("QUERIES", "POOL", "GROUP_FIELD"),
        help="the mine job's item files instead of a dictionary (e.g. the demo's WordNet)",
    )
    a = ap.parse_args()
    table, what = items_table(a) if a.items else dict_table(a)
    n_cand = sum(len(c) for c in table[S.CAND_IDS].to_pylist())
    print(f"{what}, {n_cand} candidates after the easy filter\n")
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
