"""The peer's side of benchmarks/domain_adaptation.py, run in benchmarks/.venv-peer:
sentence-transformers' own recipe, ``mine_hard_negatives`` then
``(Cached)MultipleNegativesRankingLoss`` with ``SentenceTransformerTrainer``.

    benchmarks/.venv-peer/bin/python benchmarks/_peer_st_recipe.py --pairs P.jsonl \\
        --model FOLDER --out DIR [--negatives 1] [--steps 100] [--batch 32] [--lr 5e-5]

Writes ``DIR/model`` (the trained model) and ``DIR/peer.json``: mining seconds, the wall
time of every optimizer step (start-up excluded), peak RSS of this process.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", required=True, help="JSONL of {anchor, positive}")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--negatives", type=int, default=1)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--scale", type=float, default=20.0)
    p.add_argument("--cached", action="store_true", help="CachedMultipleNegativesRankingLoss")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()

    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.training_args import BatchSamplers
    from sentence_transformers.util import mine_hard_negatives
    from transformers import TrainerCallback

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = [json.loads(line) for line in Path(args.pairs).read_text().splitlines() if line]
    model = SentenceTransformer(args.model, device="cpu")
    pairs = Dataset.from_list(rows)
    start = time.perf_counter()
    mined = pairs
    if args.negatives:
        mined = mine_hard_negatives(
            pairs,
            model,
            num_negatives=args.negatives,
            sampling_strategy="top",
            output_format="n-tuple",
            batch_size=64,
            verbose=False,
        )
    mine_s = time.perf_counter() - start
    loss_cls = (
        losses.CachedMultipleNegativesRankingLoss
        if args.cached
        else losses.MultipleNegativesRankingLoss
    )
    loss = loss_cls(model, scale=args.scale)
    step_ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
            step_ends.append(time.perf_counter())

    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        lr_scheduler_type="linear",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=max(1, args.steps // 5),
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=targs, train_dataset=mined, loss=loss, callbacks=[Clock()]
    )
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    model.save(str(out / "model"))
    result = {
        "mine_s": mine_s,
        "mined_rows": len(mined),
        "columns": mined.column_names,
        "train_wall_s": wall,
        "step_ends": step_ends,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    (out / "peer.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
