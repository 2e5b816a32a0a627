"""Train an MLLM reranker on mined rows: pairwise Yes/No and listwise "Ans: (k)" chats.

    python jobs/train_reranker.py --input outputs/mine --model tiny-qwen2-vl
    ray job submit --working-dir . -- \\
        python jobs/train_reranker.py --config jobs/configs/train_reranker.yaml

Per row: the pairwise chat with the positive -> Yes, with the hardest negative -> No, and
a listwise chat over the positive and ``data.list_size`` hard negatives -> Ans: (k).
Re-running with the same ``checkpoint.name`` resumes. The export folder
(``<storage_path>/<name>/export``) loads with ``JudgeScorer.load``: use it as the judge of
the next mine run, as ``--rerank`` of the evaluate job, or in the serve app.
"""

from __future__ import annotations

import sys
from pathlib import Path

from uniembed.cli import run_job
from uniembed.config import parse_config
from uniembed.data.locations import place
from uniembed.observe.figures import publish
from uniembed.reranker.config import RerankConfig
from uniembed.reranker.trainer import run_reranker_training

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "train_reranker.yaml"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(
        RerankConfig,
        argv,
        prog="train_reranker.py",
        description=__doc__,
        default_config=DEFAULT_CONFIG,
        flags={
            "input": "input",
            "format": "format",
            "model": "model.name",
            "storage_path": "checkpoint.storage_path",
            "name": "checkpoint.name",
        },
    )
    cfg = place(cfg, ("checkpoint.storage_path",), ("input", "model.name"))
    summary, counts = run_reranker_training(cfg)
    c = counts.to_dict()
    print(
        f"chats per kind {c['chats']}; rows with a short list {c['n_short_list']}, "
        f"without negatives {c['n_no_negatives']}"
    )
    publish("train_reranker", summary.figures(), {"output": summary.export or summary.run})
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main, "train_reranker"))
