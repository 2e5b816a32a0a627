#!/usr/bin/env bash
# Debian packages for watching jobs, installed once (idempotent; needs root to install):
#   prometheus  scripts/prometheus.sh scrapes a Ray cluster's metrics (tests/integration/test_watch_job.py)
#   chromium    the headless browser of the dashboard test (tests/fixtures/browser.py)
# Only the dashboard scenario (-m chaos) uses them: its test runs this script when it starts
# (about 730 MB of packages the first time), the demo and the default test run never do.
# Without root and with a package missing it only says so: the tests that need it fail
# with a message naming the package.
set -euo pipefail

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ "$(id -u)" != 0 ]]; then
    echo "[watch_tools] missing ${missing[*]}: apt-get install ${missing[*]} (as root)" >&2
    exit 0
fi
echo "[watch_tools] installing ${missing[*]} (one time)" >&2
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -q -o DPkg::Lock::Timeout=600
fi
# Containers refuse service starts (policy-rc.d), so the package's own Prometheus on :9090
# does not start; scripts/prometheus.sh runs one on a free port.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}"
