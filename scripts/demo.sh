#!/usr/bin/env bash
# Run the main job on the embedded default (set-up included). Extra arguments go to the job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/python jobs/mine.py "$@"
