"""The false-negative cap judged by the student it trains: rows mined per
``selection.max_fn_share`` on a domain the embedder is weak on, all-MiniLM-L6-v2 tuned on
each with the real ``jobs/tune.py``, and every student scored on held-out queries.

    python benchmarks/fn_cap_student.py [--dict /usr/share/dictd/vera.dict.dz] [--pool 3000]
        [--train 512] [--test 200] [--shares 1,0.5,0.3] [--steps 32] [--seed 0]
        [--out outputs/fn_cap_student]

Data: a dictd dictionary (``apt-get install -y dict-vera``: acronym -> expansion). Headwords
are shuffled with ``--seed`` and drawn, every sense of each, until the pool holds ``--pool``
definitions; the first ``--train`` headwords are the train queries (positive: the first
sense; the other senses are the true false negatives), the next ``--test`` the held-out
queries (relevant: all their senses). No test headword is trained on as a query.

Mining is the judge-fallback path (the embedder's cosines as scores, as the mine job does
when its judge fails the sanity check): ``fn_cap_dict.judged_rows`` retrieves exact top-K
with the easy filter, then the mine job's own ``select_table`` selects, once per share
(the counts are ``fn_cap.replay``'s). Each mined set is written as a ``mined`` folder and
tuned by ``jobs/tune.py`` (``jobs/configs/tune.yaml``; only ``train.max_steps``,
``train.warmup_steps`` and ``train.seed`` are set, the same for every arm). Evaluation:
exact cosine search of the held-out queries over the whole pool,
``uniembed.evaluation.metrics.retrieval_metrics`` (recall@k, mrr@10 as sentence-
transformers' ``InformationRetrievalEvaluator`` defines them).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from fn_cap import replay  # noqa: E402 - run from benchmarks/
from fn_cap_dict import judged_rows, read_dictd
from uniembed.data import schema as S
from uniembed.evaluation.metrics import retrieval_metrics
from uniembed.mining.config import SelectionSection
from uniembed.mining.selection_stage import SelectOptions, select_table

ROOT = Path(__file__).resolve().parent.parent
BETA, NEGATIVES = 0.01, 10  # the mine job's defaults (jobs/configs/mine.yaml)


def split(
    args: argparse.Namespace,
) -> tuple[list[str], list[int], list[str], list[set[int]], list[str]]:
    """(train queries, their positives' pool indices, the pool, each held-out query's
    relevant pool indices, the held-out queries); the pool entries' headwords (their groups)
    go to ``args.groups``."""
    by_head: dict[str, list[str]] = {}
    for h, d in read_dictd(args.dict):
        by_head.setdefault(h, []).append(d)
    heads = sorted(by_head)
    random.Random(args.seed).shuffle(heads)
    drawn, pool, groups = [], [], []
    for h in heads:  # every sense of a drawn headword, so groups are whole
        if len(pool) >= args.pool and len(drawn) >= args.train + args.test:
            break
        drawn.append(h)
        pool += by_head[h]
        groups += [h] * len(by_head[h])
    at: dict[str, list[int]] = {}
    for j, h in enumerate(groups):
        at.setdefault(h, []).append(j)
    train, test = drawn[: args.train], drawn[args.train : args.train + args.test]
    args.groups = groups
    args.what = (
        f"{args.dict}: {len(by_head)} headwords; pool {len(pool)} definitions of "
        f"{len(drawn)} headwords; {len(train)} train queries, {len(test)} held-out "
        f"({sum(len(at[h]) > 1 for h in test)} with several senses)"
    )
    return train, [at[h][0] for h in train], pool, [set(at[h]) for h in test], test


def mine(judged, share: float, args: argparse.Namespace, folder: Path) -> dict[str, int]:
    """Select with ``max_fn_share=share`` (the mine job's ``select_table``), write the rows
    under ``folder/mined``; the counts are ``fn_cap.replay``'s."""
    stats = replay(judged, S.SCORE_EMBEDDER, share, BETA, NEGATIVES)
    opts = SelectOptions(
        selection=SelectionSection(
            mode="judge", num_negatives=NEGATIVES, beta=BETA, max_fn_share=share
        ),
        score_source=S.SCORE_EMBEDDER,
        embedder="minilm",
        judge=None,
        k=args.k,
    )
    mined, _, own = select_table(judged, opts)
    if own["rows_written"] != stats["rows_written"] or mined.num_rows != own["rows_written"]:
        raise RuntimeError(f"share {share}: the replay and the selection disagree")
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "mined").mkdir(parents=True)
    pq.write_table(mined, folder / "mined" / "part-0.parquet")
    return stats


def tune(folder: Path, name: str, args: argparse.Namespace) -> tuple[Path, float, list[str]]:
    """Tune all-MiniLM-L6-v2 on ``folder/mined`` with the real ``jobs/tune.py``; its
    export folder, the seconds it took and the command."""
    store = folder.parent / "train"
    shutil.rmtree(store / name, ignore_errors=True)  # same name would resume, not train
    cmd = [
        sys.executable,
        "jobs/tune.py",
        "--input",
        str(folder / "mined"),
        "--storage-path",
        str(store),
        "--name",
        name,
        f"train.max_steps={args.steps}",
        f"train.warmup_steps={max(1, args.steps // 10)}",
        f"train.seed={args.seed}",
    ]
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "platform"))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise RuntimeError(f"tune {name} failed (exit {done.returncode})")
    export = store / name / "export"
    if not (export / "modules.json").exists():
        raise RuntimeError(f"tune {name}: no sentence-transformers export at {export}")
    return export, took, cmd


def evaluate(model: str, queries: list[str], pool: list[str], rel: list[set[int]]) -> dict:
    """recall@1, recall@10, mrr@10 of exact cosine search of ``queries`` over ``pool``."""
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(model, device="cpu")
    enc = lambda xs: m.encode(xs, batch_size=64, normalize_embeddings=True)  # noqa: E731
    return retrieval_metrics(enc(queries) @ enc(pool).T, rel, ks=(1, 10))


def main() -> None:
    """Mine per share, tune per share, evaluate; print one Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dict", default="/usr/share/dictd/vera.dict.dz")
    ap.add_argument("--pool", type=int, default=3000)
    ap.add_argument("--train", type=int, default=512)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--easy-margin", type=float, default=0.3)
    ap.add_argument("--shares", default="1,0.5,0.3")
    ap.add_argument("--steps", type=int, default=32, help="tune steps (batch 32), every arm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="outputs/fn_cap_student")
    a = ap.parse_args()
    from uniembed.models.packaged import minilm_folder

    out = (ROOT / a.out).resolve()
    train, positives, pool, rel, test = split(a)
    print(a.what, flush=True)
    judged = judged_rows(train, positives, pool, a.groups, a)
    n_cand = sum(len(c) for c in judged[S.CAND_IDS].to_pylist())
    print(f"{n_cand} candidates after the easy filter (K={a.k}, margin {a.easy_margin})")
    rows = [("untuned", None, evaluate(str(minilm_folder()), test, pool, rel))]
    for share in (float(x) for x in a.shares.split(",")):
        name = f"share-{share:g}"
        stats = mine(judged, share, a, out / name)
        export, took, cmd = tune(out / name, name, a)
        print(f"{name}: {stats['rows_written']} rows, tuned in {took:.0f} s: {' '.join(cmd)}")
        print(f"  load average {open('/proc/loadavg').read().strip()}", flush=True)
        rows.append((f"{share:g}", stats, evaluate(str(export), test, pool, rel)))
    print(f"\n{a.what}; {a.steps} steps of batch 32, seed {a.seed}\n")
    print(
        "| max_fn_share | rows kept | queries quarantined | FN filtered | student R@1 "
        "| R@10 | MRR@10 |"
    )
    print("|---|---|---|---|---|---|---|")
    for share, s, m in rows:
        counts = (
            f"{s['rows_written']} | {s['rows_without_negatives']} "
            f"| {s['false_negatives_filtered']} of {n_cand}"
            if s
            else "- | - | -"
        )
        print(
            f"| {share} | {counts} | {m['recall@1']:.3f} | {m['recall@10']:.3f} "
            f"| {m['mrr@10']:.3f} |"
        )
    print(f"\nload average {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
