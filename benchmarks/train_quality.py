"""Real quality check on CPU: stage 1 (minilm -> smollm2-135m) and stage 2 losses, WordNet.

    python benchmarks/train_quality.py [--steps 20] [--batch 8] [--heldout 100] [--stage2]

Held-out task: the last ``--heldout`` WordNet usage sentences (queries.jsonl) retrieve their
definition among the held-out definitions (accuracy@1, mrr@10 from
``uniembed.evaluation.metrics``). None of them is trained on.

Stage 1 distils the teacher's in-batch similarities of the other queries and definitions
into the student through ``jobs/distill.py``. Stage 2 (``--stage2``) starts from the
stage-1 export and trains ``soft_label``, ``unime`` and ``infonce`` through ``jobs/tune.py``
on the same rows for the same steps. The rows come from ``--mined`` (the mine job's output)
or, without it, are mined here: the teacher's top candidates except the positive, its
cosines standing in for judge scores (stated in the output).
"""

from __future__ import annotations

import sys
from pathlib import Path

# The jobs live at the repository root (jobs/*.py), next to this folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import shlex
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.demo import WORDNET_CORPUS, WORDNET_QUERIES, demo_path
from uniembed.evaluation.metrics import retrieval_metrics
from uniembed.models import EmbedInput, load_embedder

REPO = Path(__file__).resolve().parents[1]


def _load_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def split(heldout: int) -> tuple[list[dict], list[dict], dict[str, str]]:
    """(train queries, held-out queries, definition text by id)."""
    queries = _load_jsonl(demo_path(WORDNET_QUERIES))
    corpus = {r[S.ID]: r[S.TEXT] for r in _load_jsonl(demo_path(WORDNET_CORPUS))}
    return queries[:-heldout], queries[-heldout:], corpus


def evaluate(model: str, heldout: list[dict], corpus: dict[str, str]) -> dict[str, float]:
    """Held-out query -> definition retrieval of ``model`` (name or folder)."""
    embedder = load_embedder(model)
    docs = [corpus[q["pos_id"]] for q in heldout]
    qv, dv = [], []
    for i in range(0, len(heldout), 16):
        part = heldout[i : i + 16]
        qv.append(embedder.embed([EmbedInput(text=q[S.TEXT]) for q in part]))
        dv.append(embedder.embed([EmbedInput(text=d) for d in docs[i : i + 16]]))
    scores = np.concatenate(qv) @ np.concatenate(dv).T
    m = retrieval_metrics(scores, [{i} for i in range(len(heldout))], ks=(1, 10))
    return {"acc@1": m["accuracy@1"], "mrr@10": m["mrr@10"]}


def mined_rows(train: list[dict], corpus: dict[str, str], teacher: str, k: int) -> pa.Table:
    """Rows with the teacher's k hardest non-positive definitions; cosines as scores."""
    embedder = load_embedder(teacher)
    ids = sorted({q["pos_id"] for q in train})
    docs = embedder.embed([EmbedInput(text=corpus[i]) for i in ids])
    qv = embedder.embed([EmbedInput(text=q[S.TEXT]) for q in train])
    sims = qv @ docs.T
    rows = []
    for qi, q in enumerate(train):
        order = [j for j in np.argsort(-sims[qi]) if ids[j] != q["pos_id"]][:k]
        pos = float(sims[qi, ids.index(q["pos_id"])])
        rows.append(
            {
                S.QUERY_ID: q[S.ID],
                S.QUERY_TEXT: q[S.TEXT],
                S.POS_ID: q["pos_id"],
                S.POS_TEXT: corpus[q["pos_id"]],
                S.POS_SCORE: pos,
                S.NEG_IDS: [ids[j] for j in order],
                S.NEG_TEXTS: [corpus[ids[j]] for j in order],
                S.NEG_IMAGES: [None] * len(order),
                S.NEG_SCORES: [float(sims[qi, j]) for j in order],
                S.NEG_RANKS: list(range(1, len(order) + 1)),
                S.FILLED: False,
                S.N_FILLED: 0,
                S.EMBEDDER: teacher,
                S.JUDGE: f"{teacher} cosine (stand-in)",
            }
        )
    return pa.Table.from_pylist(rows, schema=S.MINED_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--student", default="smollm2-135m")
    parser.add_argument("--teacher", default="minilm")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heldout", type=int, default=100)
    parser.add_argument("--train-rows", type=int, default=400)
    parser.add_argument("--stage2", action="store_true")
    parser.add_argument(
        "--exclude-self", action="store_true", help="stage 1 without the self-similarity term"
    )
    parser.add_argument("--mined", default=None, help="mine job output (else mined here)")
    parser.add_argument("--out", default=None, help="keep runs here (default: a temp dir)")
    args = parser.parse_args()

    from jobs import distill, tune

    train, heldout, corpus = split(args.heldout)
    train = train[: args.train_rows]
    table: list[tuple[str, dict[str, float], float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        table.append((f"teacher {args.teacher}", evaluate(args.teacher, heldout, corpus), 0.0))
        table.append((f"student {args.student} before", evaluate(args.student, heldout, corpus), 0))
        texts = [{"id": q[S.ID], "text": q[S.TEXT]} for q in train] + [
            {"id": q["pos_id"], "text": corpus[q["pos_id"]]} for q in train
        ]
        texts_uri = f"{out}/stage1_texts.jsonl"
        storage.write_text(texts_uri, "\n".join(json.dumps(t) for t in texts))
        common = [
            f"train.max_steps={args.steps}",
            f"train.batch_size={args.batch}",
            "train.warmup_steps=2",
            "train.lr=2e-4",
            "checkpoint.every_steps=1000",
            "scaling.cpus_per_worker=1",
            "ray.num_cpus=2",
            "--storage-path",
            f"{out}/runs",
        ]
        t0 = time.time()
        distill.main(
            [
                "--input",
                texts_uri,
                "--model",
                args.student,
                "--teacher",
                args.teacher,
                "--name",
                "stage1",
                f"loss.exclude_self={str(args.exclude_self).lower()}",
                *common,
            ]
        )
        stage1 = f"{out}/runs/stage1/export"
        table.append(
            (
                f"after stage 1 (exclude_self={args.exclude_self})",
                evaluate(stage1, heldout, corpus),
                time.time() - t0,
            )
        )
        if args.stage2:
            mined = args.mined
            if mined is None:
                mined = f"{out}/mined.parquet"
                storage.write_parquet(mined, mined_rows(train, corpus, args.teacher, k=4))
            for loss in ("soft_label", "unime", "infonce"):
                t0 = time.time()
                tune.main(
                    [
                        "--input",
                        mined,
                        "--model",
                        stage1,
                        "--loss",
                        loss,
                        "--name",
                        f"stage2-{loss}",
                        "loss.num_negatives=4",
                        *common,
                    ]
                )
                export = f"{out}/runs/stage2-{loss}/export"
                table.append(
                    (f"stage 2 {loss}", evaluate(export, heldout, corpus), time.time() - t0)
                )
    print(
        f"\nWordNet held-out retrieval, {args.heldout} queries vs their {args.heldout} "
        f"definitions; {args.steps} steps x batch {args.batch}"
    )
    print(f"{'model':36s} {'acc@1':>7s} {'mrr@10':>7s} {'train s':>8s}")
    for name, m, secs in table:
        print(f"{name:36s} {m['acc@1']:7.3f} {m['mrr@10']:7.3f} {secs:8.0f}")
    print(f"reproduce: python benchmarks/train_quality.py {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
