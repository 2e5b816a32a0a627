"""Ray Train loop throughput against a bare PyTorch loop, and GradCache memory by chunk size.

    python benchmarks/train_throughput.py [--model minilm] [--steps 12] [--batch 16]

1. Throughput: stage 2 (InfoNCE, in-batch) on WordNet query -> definition rows. The Ray
   Train run (1 worker) and the bare loop use the same model, rows, batch order code and
   step function; samples/s are wall-clock between step ends after ``--warmup`` steps, so
   the Ray side pays for reporting, metrics and checkpoints (every ``--every`` steps).
   Target ratio >= 0.85.
2. GradCache: peak resident memory of one training step on a batch of ``--gc-batch`` rows
   for several chunk sizes (0: no GradCache), each in a fresh process (ru_maxrss cannot be
   reset), minus the resident memory before the step.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from uniembed.data import schema as S
from uniembed.data.demo import WORDNET_CORPUS, WORDNET_QUERIES, demo_path
from uniembed.data.training_rows import TUNE_SCHEMA
from uniembed.losses import InfoNCELoss
from uniembed.training.loop import epoch_batches, load_student, lr_lambda
from uniembed.training.lora import trainable_parameters
from uniembed.training.metrics import read_metrics
from uniembed.training.steps import tune_batch, tune_step
from uniembed.training.train_config import TuneConfig


def wordnet_rows(n: int) -> pa.Table:
    """``n`` stage-2 rows: a WordNet usage sentence -> its definition, no mined negatives."""
    corpus = {}
    for line in Path(demo_path(WORDNET_CORPUS)).read_text().splitlines():
        rec = json.loads(line)
        corpus[rec[S.ID]] = rec[S.TEXT]
    rows = []
    for line in Path(demo_path(WORDNET_QUERIES)).read_text().splitlines()[:n]:
        q = json.loads(line)
        rows.append(
            {
                S.QUERY_ID: q[S.ID],
                S.QUERY_TEXT: q[S.TEXT],
                S.QUERY_INSTRUCTION: q[S.INSTRUCTION],
                S.POS_TEXT: corpus[q["pos_id"]],
                S.POS_SCORE: 1.0,
                S.NEG_TEXTS: [],
                S.NEG_IMAGES: [],
                S.NEG_SCORES: [],
                S.SOURCE: f"{WORDNET_QUERIES}:{len(rows) + 1}",
            }
        )
    return pa.Table.from_pylist(rows, schema=TUNE_SCHEMA)


def make_config(args: argparse.Namespace, input_uri: str, storage_path: str) -> TuneConfig:
    from uniembed.config import from_dict

    return from_dict(
        TuneConfig,
        {
            "input": input_uri,
            "model": {"name": args.model},
            "loss": {"name": "infonce", "num_negatives": 0},
            "train": {"max_steps": args.steps, "batch_size": args.batch, "warmup_steps": 1},
            "prompt": {"max_length": 48},
            "scaling": {"num_workers": 1, "cpus_per_worker": 1.0},
            "checkpoint": {
                "storage_path": storage_path,
                "name": "bench",
                "every_steps": args.every,
                "export": False,
            },
            "ray": {"num_cpus": 2},
        },
    )


def bare_loop(cfg: TuneConfig, table: pa.Table, warmup: int) -> float:
    """Samples/s of the same steps without Ray (one process), with the thread count the Ray
    worker gets (Ray sets OMP_NUM_THREADS to the worker's CPUs)."""
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    torch.manual_seed(cfg.train.seed)
    student = load_student(cfg, "cpu")
    params = list(trainable_parameters(student.model).values())
    opt = torch.optim.AdamW(params, lr=cfg.train.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(cfg.train.warmup_steps, cfg.train.max_steps)
    )
    loss_fn = InfoNCELoss(cfg.loss.temperature)
    order = np.random.default_rng(cfg.train.seed).permutation(table.num_rows)
    rows = table.take(order).to_pylist()
    ends = []
    batches = epoch_batches(rows, cfg.train.batch_size, cfg.train.seed, 0, 0, 0)
    for _, batch_rows in zip(range(cfg.train.max_steps), batches):
        tune_step(student.features, loss_fn, tune_batch(batch_rows, 0), 0)
        torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ends.append(time.time())
    return throughput(ends, cfg.train.batch_size, warmup)


def throughput(ends: list[float], batch: int, warmup: int) -> float:
    """Samples/s from step end times, skipping the first ``warmup`` steps."""
    span = ends[-1] - ends[warmup - 1]
    return batch * (len(ends) - warmup) / span


def ray_loop(cfg: TuneConfig, warmup: int) -> tuple[float, float]:
    """(samples/s between steps, seconds of the whole fit including start-up)."""
    from uniembed.training.trainer import run_training

    start = time.time()
    summary = run_training(cfg)
    total = time.time() - start
    rows = read_metrics(f"{summary.run}/metrics.csv")
    return throughput([r["time"] for r in rows], cfg.train.batch_size, warmup), total


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def gc_child(model: str, batch: int, chunk: int) -> float:
    """One step at ``chunk`` (run inside the child process); returns peak MiB growth."""
    args = argparse.Namespace(model=model, steps=1, batch=batch, every=1)
    cfg = make_config(args, "unused", "unused")
    table = wordnet_rows(batch)
    torch.manual_seed(0)
    student = load_student(cfg, "cpu")
    loss_fn = InfoNCELoss(cfg.loss.temperature)
    batch_obj = tune_batch(table.to_pylist(), 0)
    torch.set_num_threads(1)
    before = _rss_mib()
    tune_step(student.features, loss_fn, batch_obj, chunk)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return peak - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--every", type=int, default=5, help="checkpoint every N steps (Ray)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gc-batch", type=int, default=64)
    parser.add_argument("--chunks", default="0,32,8,2")
    parser.add_argument("--gc-child", nargs=3, metavar=("MODEL", "BATCH", "CHUNK"))
    args = parser.parse_args()
    if args.gc_child:
        print(gc_child(args.gc_child[0], int(args.gc_child[1]), int(args.gc_child[2])))
        return

    with tempfile.TemporaryDirectory() as tmp:
        table = wordnet_rows(args.batch * args.steps)
        pq.write_table(table, f"{tmp}/rows.parquet")
        cfg = make_config(args, f"{tmp}/rows.parquet", f"{tmp}/runs")
        # Ray first, then bare: the bare loop must not benefit from a warmer page cache.
        ray_sps, ray_total = ray_loop(cfg, args.warmup)
        bare_sps = bare_loop(cfg, table, args.warmup)
    print(
        f"model {args.model}, batch {args.batch}, {args.steps} steps (first {args.warmup} skipped)"
    )
    print(f"bare PyTorch loop : {bare_sps:8.2f} samples/s")
    print(f"Ray Train, 1 worker: {ray_sps:8.2f} samples/s (fit incl. start-up {ray_total:.0f} s)")
    print(f"ratio Ray / bare  : {ray_sps / bare_sps:8.3f}  (target >= 0.85)")

    print(f"\nGradCache peak RSS growth, one step on {args.gc_batch} rows ({args.model}):")
    for chunk in [int(c) for c in args.chunks.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--gc-child", args.model, str(args.gc_batch), str(chunk)],
            capture_output=True,
            text=True,
            check=True,
        )
        peak = float(out.stdout.strip().splitlines()[-1])
        label = "off" if chunk == 0 else str(chunk)
        print(f"  chunk {label:>4}: {peak:8.1f} MiB")
    print(f"reproduce: python benchmarks/train_throughput.py {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
