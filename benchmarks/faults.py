"""Chaos benchmark: lose nodes, a driver and the object store, and count what was lost.

    PYTHONPATH=platform python benchmarks/faults.py                 # every scenario
    PYTHONPATH=platform python benchmarks/faults.py --only mine,s3  # some of them
    python benchmarks/faults.py --from-report faults.jsonl          # table of earlier runs

(``--from-report`` prints the table of a report the fault tests left earlier, run with
``UNIEMBED_FAULTS_REPORT=faults.jsonl bash scripts/test.sh tests/integration/test_faults_*``.)

Each scenario is one of the fault tests (tests/integration/test_faults_*.py), run on a
real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: one raylet and
object store per node) or against a private radosgw whose gateway is stopped for 20 s;
every one compares its output with an uninterrupted run of the same job in the same
session. The tests assert; this script runs them with ``UNIEMBED_FAULTS_REPORT`` set, so
each leaves its measurements, and prints one table:

    scenario | outcome | s to recover | lost | equal to clean run

"s to recover": mine, from the node's loss to the next shard written (driver kill: the
rerun's wall time); train, from the loss to the next checkpoint past the one restored;
serve, from the loss to the last failed request (0: none failed); S3, from the gateway's
return to the end of the write or job. The last line reads
``faults: <n> scenarios, <k> recovered, <m> lost``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = {
    "mine": "tests/integration/test_faults_mine.py",
    "train": "tests/integration/test_faults_train.py",
    "serve": "tests/integration/test_faults_serve.py",
    "s3": "tests/integration/test_faults_storage.py",
}


def _s3_env() -> dict[str, str]:
    """Start the shared local S3 server if needed (the train scenario keeps checkpoints
    there) and return its AWS variables."""
    subprocess.run(["bash", str(ROOT / "scripts" / "s3_server.sh"), "start"], check=True)
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "s3_server.sh"), "env"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    words = shlex.split(out)
    return dict(w.split("=", 1) for w in words if "=" in w)


def run(suites: list[str], report: Path) -> int:
    """Run the chosen fault tests; returns pytest's exit code."""
    env = {
        **os.environ,
        **_s3_env(),
        "UNIEMBED_FAULTS_REPORT": str(report),
        "PYTHONPATH": str(ROOT / "platform"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"]
    cmd += [SUITES[s] for s in suites]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def latest(report: Path) -> list[dict]:
    """The report's rows, the last one of each scenario (a scenario run twice counts once)."""
    rows: dict[str, dict] = {}
    for line in report.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows.pop(row["scenario"], None)
            rows[row["scenario"]] = row
    return list(rows.values())


def table(rows: list[dict]) -> str:
    """The results as one aligned text table."""
    head = ("scenario", "outcome", "s to recover", "lost", "equal to clean run")
    lines = []
    for r in rows:
        outcome = r.get("outcome") or ("recovered" if r["recovered"] else "NOT recovered")
        rec = "-" if r["recover_s"] is None else f"{r['recover_s']:.1f}"
        equal = "n/a" if r["equal"] is None else ("yes" if r["equal"] else "NO")
        lines.append((r["scenario"], outcome, rec, f"{r['lost']} {r['unit']}", equal))
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*x) for x in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default=",".join(SUITES), help=f"comma-separated: {', '.join(SUITES)}"
    )
    parser.add_argument("--from-report", help="print the table of this report; run nothing")
    args = parser.parse_args(argv)
    if args.from_report:
        rows = latest(Path(args.from_report))
        print(table(rows))
        print(summary(rows))
        return 0
    suites = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown scenario group(s) {unknown}; choose from {list(SUITES)}")
    with tempfile.TemporaryDirectory(prefix="uniembed-faults-") as tmp:
        report = Path(tmp) / "faults.jsonl"
        start = time.monotonic()
        code = run(suites, report)
        rows = latest(report) if report.exists() else []
    print()
    print(table(rows))
    print(f"\n(pytest exit code {code}; {time.monotonic() - start:.0f} s)")
    print(f"command: PYTHONPATH=platform python benchmarks/faults.py --only {','.join(suites)}")
    print(summary(rows))
    return 0 if code == 0 else 1


def summary(rows: list[dict]) -> str:
    """The last line: scenarios, how many recovered, how much was lost in all."""
    recovered = sum(1 for r in rows if r["recovered"])
    lost = sum(int(r["lost"]) for r in rows)
    return f"faults: {len(rows)} scenarios, {recovered} recovered, {lost} lost"


if __name__ == "__main__":
    sys.exit(main())
