"""Evaluate an embedder on MMEB-style, caption-retrieval and compositional sets.

    python jobs/evaluate.py --model minilm --data data/demo/wordnet/eval.jsonl --output outputs/eval
    python jobs/evaluate.py --model tiny-qwen2-vl --data data/demo/openclipart/eval.jsonl \\
        --output outputs/eval-openclipart --baseline tiny-llava
    ray job submit --working-dir . -- \\
        python jobs/evaluate.py --config jobs/configs/evaluate_mmeb.yaml

Each ``--data`` is a JSONL file or a folder of them; one task per file, named by the file
stem; the task kind (MMEB candidate lists, caption retrieval, compositional pairs) is told
by the file's fields. ``--rerank <reranker>`` re-scores each query's top
``rerank_top_k`` candidates with a trained reranker (pairwise P(Yes)). Writes report.md,
metrics.json, per_query.npz and PNG plots.
"""

from __future__ import annotations

import sys
from pathlib import Path

from uniembed.cli import run_job
from uniembed.config import parse_config
from uniembed.data.locations import place
from uniembed.evaluation.config import EvalConfig
from uniembed.evaluation.groups import OVERALL, aggregate
from uniembed.evaluation.runner import run_evaluation
from uniembed.observe.figures import publish

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "evaluate.yaml"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(
        EvalConfig,
        argv,
        prog="evaluate.py",
        description=__doc__,
        default_config=DEFAULT_CONFIG,
        flags={
            "model": "model.name",
            "data": "data",
            "output": "output",
            "baseline": "baseline",
            "groups": "groups",
            "rerank": "rerank",
            "allow_empty": "allow_empty",
        },
    )
    cfg = place(cfg, ("output", "work_dir"), ("data", "model.name", "baseline", "rerank"))
    results, report = run_evaluation(cfg)
    for name, task in results.tasks.items():
        excluded = f", {task.n_excluded} excluded" if task.n_excluded else ""
        print(
            f"{name}: {task.primary_metric} {100 * task.score:.1f}% ({task.n_queries} q{excluded})"
        )
    overall = aggregate({n: t.score for n, t in results.tasks.items()}, results.group_table)
    figures = {f"score_{n}": t.score for n, t in results.tasks.items()}
    publish("evaluate", {**figures, "overall": overall[OVERALL]}, {"output": cfg.output})
    print(f"overall: {100 * overall[OVERALL]:.1f}%; report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main, "evaluate"))
