"""Stage 1: distil a teacher's in-batch similarities into an (M)LLM's language model.

    python jobs/distill.py --input texts.jsonl          # configs/distill.yaml: real data
    python jobs/distill.py --config jobs/configs/distill_demo.yaml   # minutes-long demo
    ray job submit --working-dir . -- python jobs/distill.py --config jobs/configs/distill.yaml

The teacher runs on the fly (``teacher.model``, e.g. minilm) or its embeddings come from
an embed job (``teacher.embeddings=<Parquet with id, embedding>``; then set
``teacher.model=null``). Re-running with the same ``checkpoint.name`` resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from uniembed.cli import run_job
from uniembed.config import parse_config
from uniembed.data.locations import place
from uniembed.observe.figures import publish
from uniembed.training.train_config import DistillConfig
from uniembed.training.trainer import run_training

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "distill.yaml"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(
        DistillConfig,
        argv,
        prog="distill.py",
        description=__doc__,
        default_config=DEFAULT_CONFIG,
        flags={
            "input": "input",
            "model": "model.name",
            "teacher": "teacher.model",
            "storage_path": "checkpoint.storage_path",
            "name": "checkpoint.name",
        },
    )
    cfg = place(
        cfg,
        ("checkpoint.storage_path",),
        ("input", "model.name", "teacher.model", "teacher.embeddings"),
    )
    summary = run_training(cfg)
    publish("distill", summary.figures(), {"output": summary.export or summary.run})
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main, "distill"))
