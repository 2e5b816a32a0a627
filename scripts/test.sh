#!/usr/bin/env bash
# Run the test suite: sets up .venv if needed, installs and starts the local S3 server
# (Ceph radosgw on 127.0.0.1), then runs pytest. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh tests/unit -x
#   bash scripts/test.sh -m "not chaos"     (adds the slow tier: real-model, rerun, S3-copy and
#                                            outage variants of scenarios the default run covers)
#   bash scripts/test.sh -m chaos           (the multi-node fault and browser scenarios; the
#                                            browser one installs Prometheus and Chromium,
#                                            Debian packages, on its first run: watch_tools.sh)
#   bash scripts/test.sh -m ""              (everything)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/s3_server.sh start
eval "$(bash scripts/s3_server.sh env)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
set +e
# The default run covers every job end to end on tiny models. The slow tier and the chaos
# scenarios (multi-node faults, the dashboard in a browser) run when asked for with -m, or by
# benchmarks/faults.py.
marker=(-m "not slow and not chaos")
for arg in "$@"; do
  case "$arg" in -m | -m* | --markexpr*) marker=() ;; esac
done
.venv/bin/python -m pytest -p no:cacheprovider "${marker[@]}" "$@"
rc=$?
set -e
# pytest exits 5 when a selection matched no test: that is a failure of the selection.
exit "$rc"
