"""The mine job's wall time split per stage, measured in one run.

    python benchmarks/mine_stages.py                       # the default config (WordNet demo)
    python benchmarks/mine_stages.py --config jobs/configs/mine_openclipart.yaml max_queries=32

Runs ``jobs/mine.py`` into a fresh temporary output (so nothing is resumed) with the given
arguments, then prints each stage's seconds and share of the total, the judge's pairs/s and
its AUC. "busy" rows are summed inside the actors and overlap the streaming wall time.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.mine import main as mine_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="mine-bench-") as tmp:
        start = time.perf_counter()
        code = mine_main([*args, f"output={tmp}/out", "resume=false"])
        total = time.perf_counter() - start
        report = json.loads((Path(tmp) / "out" / "report.json").read_text())
    print(f"\n{'stage':<42}{'seconds':>10}{'share':>8}")
    for stage, seconds in report["stage_seconds"].items():
        print(f"{stage:<42}{seconds:>10.1f}{seconds / total:>8.1%}")
    print(f"{'total (job wall, incl. Ray start)':<42}{total:>10.1f}")
    pps, auc = report["pairs_per_s"], report["auc"]
    print(
        f"judge {report['judge']}: {report['judged_pairs']} pairs, "
        f"{pps:.2f} pairs/s per busy second"
        if pps
        else "judge: none",
        f"; AUC {auc:.3f}" if auc is not None else "",
        f"; FN catch share {report['fn_catch_share']}",
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
