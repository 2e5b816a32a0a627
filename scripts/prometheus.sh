#!/usr/bin/env bash
# Prometheus (Debian's `prometheus` package) scraping a Ray cluster's metrics, so the
# dashboard's Metrics/Ray Data figures and the jobs' own uniembed_* figures have a home.
#
#   bash scripts/prometheus.sh install                  # apt-get install prometheus (once)
#   eval "$(bash scripts/prometheus.sh start [RAY_TEMP_DIR])"
#       # before `ray start --head`: prints PROMETHEUS_URL=... and RAY_PROMETHEUS_HOST=...
#       # (export the latter to the head, so its dashboard queries this Prometheus)
#   bash scripts/prometheus.sh stop
#
# It scrapes every Ray node listed in Ray's service-discovery file,
# <RAY_TEMP_DIR>/prom_metrics_service_discovery.json (default /tmp/ray), which Ray's head
# writes and keeps current; Prometheus re-reads it every 5 s. Listens on a free port of
# 127.0.0.1 (UNIEMBED_PROMETHEUS_PORT to choose one); data and pid in
# UNIEMBED_PROMETHEUS_DIR (default ${TMPDIR:-/tmp}/uniembed-prometheus-$UID).
set -euo pipefail

STATE=${UNIEMBED_PROMETHEUS_DIR:-${TMPDIR:-/tmp}/uniembed-prometheus-$(id -u)}
BIN=${PROMETHEUS_BIN:-prometheus}

log() { echo "[prometheus] $*" >&2; }
die() { log "$*"; exit 1; }

installed() { command -v "$BIN" >/dev/null; }

cmd_install() {
    if installed; then
        log "prometheus already installed"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "installing the Debian package needs root"
    if ! apt-cache show prometheus >/dev/null 2>&1; then
        apt-get update -q -o DPkg::Lock::Timeout=600
    fi
    # Containers refuse service starts (policy-rc.d): the package's own daemon on :9090
    # never starts; this script runs its own on a free port.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 prometheus
    installed || die "package installed but no prometheus binary"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd_start() {
    local ray_temp=${1:-/tmp/ray}
    installed || die "prometheus is not installed: bash scripts/prometheus.sh install"
    mkdir -p "$STATE/data"
    if [[ -f "$STATE/pid" ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
        log "already running (pid $(cat "$STATE/pid"))"
    else
        local port=${UNIEMBED_PROMETHEUS_PORT:-$(free_port)}
        cat >"$STATE/prometheus.yml" <<YML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: ray
    file_sd_configs:
      - files: ['$ray_temp/prom_metrics_service_discovery.json']
        refresh_interval: 5s
YML
        "$BIN" --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/data" \
            --web.listen-address="127.0.0.1:$port" >"$STATE/prometheus.log" 2>&1 &
        echo $! >"$STATE/pid"
        echo "$port" >"$STATE/port"
        for _ in $(seq 60); do
            curl -fs "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break
            kill -0 "$(cat "$STATE/pid")" 2>/dev/null || die "did not start: $(tail -5 "$STATE/prometheus.log")"
            sleep 0.5
        done
    fi
    cmd_env
}

cmd_env() {
    [[ -f "$STATE/port" ]] || die "not started"
    echo "PROMETHEUS_URL=http://127.0.0.1:$(cat "$STATE/port")"
    echo "export RAY_PROMETHEUS_HOST=http://127.0.0.1:$(cat "$STATE/port")"
}

cmd_stop() {
    if [[ -f "$STATE/pid" ]]; then
        kill "$(cat "$STATE/pid")" 2>/dev/null || true
        rm -f "$STATE/pid" "$STATE/port"
        log "stopped"
    fi
}

case "${1:-}" in
    install) cmd_install ;;
    start) shift; cmd_start "$@" ;;
    env) cmd_env ;;
    stop) cmd_stop ;;
    *) die "usage: $0 install|start [RAY_TEMP_DIR]|env|stop" ;;
esac
