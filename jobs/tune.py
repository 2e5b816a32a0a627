"""Stage 2: contrastive tuning on mined rows, with the loss chosen in the config.

    python jobs/tune.py --input outputs/mine              # configs/tune.yaml: real data
    python jobs/tune.py --config jobs/configs/tune_demo.yaml --input outputs/mine  # demo
    ray job submit --working-dir . -- python jobs/tune.py --config jobs/configs/tune.yaml

Losses: ``unime`` (in-batch top-k hard negatives after the false-negative filter),
``soft_label`` (UniME-V2: symmetric KL to the judge's scores), ``infonce`` (baseline),
``rzen`` (hardness-weighted InfoNCE, learnable temperature, false-negative mitigation),
``kalm`` (focal reweighting, online hard-negative mixing). ``--help`` lists every key with
the value it would run with and its allowed values.
Re-running with the same ``checkpoint.name`` resumes from the last checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

from uniembed.cli import run_job
from uniembed.config import parse_config
from uniembed.data.locations import place
from uniembed.observe.figures import publish
from uniembed.training.train_config import TuneConfig
from uniembed.training.trainer import run_training

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "tune.yaml"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(
        TuneConfig,
        argv,
        prog="tune.py",
        description=__doc__,
        default_config=DEFAULT_CONFIG,
        flags={
            "input": "input",
            "format": "format",
            "model": "model.name",
            "loss": "loss.name",
            "storage_path": "checkpoint.storage_path",
            "name": "checkpoint.name",
        },
    )
    cfg = place(cfg, ("checkpoint.storage_path",), ("input", "model.name"))
    summary = run_training(cfg)
    publish("tune", summary.figures(), {"output": summary.export or summary.run})
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main, "tune"))
