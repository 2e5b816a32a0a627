"""Mine hard negatives with an MLLM judge (UniME-V2): retrieve, judge, filter, select.

    python jobs/mine.py                      # the demo default: WordNet, minilm + smollm2-135m
    python jobs/mine.py --config jobs/configs/mine_openclipart.yaml
    ray job submit --working-dir . -- python jobs/mine.py --config jobs/configs/mine_cluster.yaml

Out: <output>/mined/*.parquet (training rows), export/*.json (UniME-V2 scored JSON),
quarantine/, report.md / report.json / judge_scores.png, _SUCCESS.json. A rerun with the
same output resumes: finished shards are skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from uniembed.cli import run_job
from uniembed.config import parse_config
from uniembed.data.locations import place
from uniembed.mining.config import MineConfig
from uniembed.mining.pipeline import run_mine
from uniembed.observe.figures import publish

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "mine.yaml"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(
        MineConfig,
        argv,
        prog="mine.py",
        description=__doc__,
        default_config=DEFAULT_CONFIG,
        flags={
            "queries": "queries",
            "pool": "pool",
            "output": "output",
            "embedder": "embedder.name",
            "judge": "judge.model.name",
            "overwrite": "overwrite",
            "allow_empty": "allow_empty",
        },
    )
    cfg = place(cfg, ("output",), ("queries", "pool", "embedder.name", "judge.model.name"))
    report, code = run_mine(cfg)
    pps = "n/a" if report.pairs_per_s is None else f"{report.pairs_per_s:.1f}"
    if report.sanity is not None:
        scores = f"{report.sanity.line(report.judge or '')}; {pps} pairs/s"
    else:
        scores = "no judge: the embedder's similarities chose the negatives"
    quarantined = sum(report.quarantined.values()) + report.rows_without_negatives
    notes = {"output": cfg.output}
    if report.sanity is not None and report.sanity.action != "judge":
        notes["judge_sanity"] = report.sanity.line(report.judge or "")
    publish(
        "mine",
        {
            "rows_read": report.queries,
            "rows_written": report.rows_written,
            "quarantined": quarantined,
            "pairs_judged": report.judged_pairs,
            "pairs_per_s": report.pairs_per_s,
            "judge_auc": report.auc,
        },
        notes,
    )
    print(
        f"mined {report.rows_written}/{report.queries} queries into {cfg.output} "
        f"(quarantined {quarantined}); "
        f"{scores}; "
        f"report {cfg.output.rstrip('/')}/report.md"
    )
    return code


if __name__ == "__main__":
    sys.exit(run_job(main, "mine"))
